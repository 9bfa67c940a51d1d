# bash completion for jailme(1): the targets this user may join (`jailme --list`), then the
# command to run inside.

_jailme() {
  local cur prev words cword
  _init_completion || return
  if ((cword == 1)); then
    COMPREPLY=($(compgen -W "$(jailme --list 2>/dev/null | while read -r name _; do
      printf '%s\n' "$name"; done) --list --version -h --help" -- "$cur"))
    return
  fi
  [[ ${words[1]} == -* ]] && return
  _command_offset 2
} && complete -F _jailme jailme
