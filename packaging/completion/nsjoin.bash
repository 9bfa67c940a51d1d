# bash completion for nsjoin(1). Target names come from the broker itself (`--list`): only
# the targets the calling user may join are offered.

_nsbroker_targets() {  # "$@": nsjoin and its --socket/--broker-uid arguments, if any
  "$@" --list 2>/dev/null | while read -r name _; do printf '%s\n' "$name"; done
}

_nsjoin() {
  local cur prev words cword
  _init_completion || return
  local i socket=()
  for ((i = 1; i < cword; i++)); do
    [[ ${words[i]} == --socket || ${words[i]} == --broker-uid ]] &&
      socket+=("${words[i]}" "${words[i + 1]}")
    if [[ ${words[i]} == -- ]]; then  # the command and its own arguments
      _command_offset $((i + 1))
      return
    fi
  done
  case $prev in
    -t | --target)
      COMPREPLY=($(compgen -W "$(_nsbroker_targets nsjoin "${socket[@]}")" -- "$cur"))
      return ;;
    --socket | --uwsgi)
      _filedir
      return ;;
    -S | --setuid | --broker-uid)
      COMPREPLY=($(compgen -W "$(getent passwd | cut -d: -f3)" -- "$cur"))
      return ;;
    -G | --setgid)
      COMPREPLY=($(compgen -W "$(getent group | cut -d: -f3)" -- "$cur"))
      return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W '-t --target -a --all -m --mount -u --uts -i --ipc -n --net -p --pid
      -U --user -C --cgroup -T --time -r --root -w --wd -F --no-fork -S --setuid -G --setgid
      --socket --broker-uid --uwsgi --list --json --status --prometheus --version -h --help --' -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -c -- "$cur"))
} && complete -F _nsjoin nsjoin
