/**
 * The command wrapper the init container installs for the app container. It
 * is POSIX sh, so any image with /bin/sh can run it; it uses shell builtins
 * only, plus mkfifo and tee when the step sends stdout to a file.
 *
 * It runs the argv after `--` exactly as given ("$@", never re-split),
 * forwards TERM, INT, HUP, QUIT, USR1 and USR2 to it, writes its PID and then
 * its exit code into the state directory, and exits with that code. A
 * non-interactive shell starts background commands with INT and QUIT
 * ignored, so those two reach only commands that install their own handlers.
 */
export const WRAPPER_SCRIPT = `# oras-wrap (cdk8s-oras): runs a step's command as given and records how it ended.
# Usage: sh oras-wrap --state DIR [--stdout FILE] -- COMMAND [ARG]...
state=
stdout_file=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --state) state=$2; shift 2 ;;
    --stdout) stdout_file=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "oras-wrap: unknown option $1" >&2; exit 126 ;;
  esac
done
if [ -z "$state" ] || [ "$#" -eq 0 ]; then
  echo "oras-wrap: usage: oras-wrap --state DIR [--stdout FILE] -- COMMAND [ARG]..." >&2
  exit 126
fi

echo "$$" > "$state/wrapper.pid"
child=
signalled=
forward() {
  signalled=1
  if [ -n "$child" ]; then kill "-$1" "$child" 2>/dev/null; fi
}
for sig in TERM INT HUP QUIT USR1 USR2; do trap "forward $sig" "$sig"; done

# A background command would read /dev/null: keep the real stdin on fd 3.
exec 3<&0
if [ -n "$stdout_file" ]; then
  fifo="$state/stdout.fifo"
  if ! mkfifo "$fifo"; then
    echo "oras-wrap: the image needs mkfifo and tee to copy stdout to $stdout_file" >&2
    printf '%s\\n' 126 > "$state/exit-code"
    exit 126
  fi
  tee "$stdout_file" < "$fifo" &
  tee_pid=$!
  "$@" <&3 3<&- > "$fifo" &
  child=$!
else
  "$@" <&3 3<&- &
  child=$!
fi
exec 3<&-

wait "$child"
code=$?
if [ -n "$signalled" ]; then
  # A trapped signal ends wait early with 128+n while the command may still run.
  while :; do
    wait "$child"
    next=$?
    [ "$next" -eq 127 ] && break
    code=$next
    kill -0 "$child" 2>/dev/null || break
  done
fi
if [ -n "$stdout_file" ]; then wait "$tee_pid" 2>/dev/null; fi
printf '%s\\n' "$code" > "$state/exit-code"
exit "$code"
`;
