# bash completion for nsbrokerd(8).

_nsbrokerd() {
  local cur prev words cword
  _init_completion || return
  case $prev in
    -c | --config)
      _filedir conf
      return ;;
    --socket)
      _filedir
      return ;;
  esac
  COMPREPLY=($(compgen -W '-c --config --check-config --socket --self -v --verbose --version
    -h --help' -- "$cur"))
} && complete -F _nsbrokerd nsbrokerd
