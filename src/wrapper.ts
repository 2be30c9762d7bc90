/**
 * The command wrapper of the app container, passed inline by injectOras
 * (`/bin/sh -c "$WRAPPER_SCRIPT" oras-wrap --state DIR … -- argv`). It is
 * POSIX sh, so any image with /bin/sh can run it; it uses shell builtins,
 * plus `sleep` while it waits for the inputs (whole seconds when `sleep`
 * takes no fractions, a busy wait without one), and mkfifo and tee when the
 * step sends stdout to a file.
 *
 * With `--await-pull SECONDS` it first waits for the container oras-pull,
 * which runs beside it: polling every 50 ms for two seconds, then every
 * second, until oras-pull leaves `inputs.json` (every input is in place).
 * When oras-pull leaves `pull.failed` instead, ends without a marker (SIGKILL,
 * OOM kill: its PID is gone from the pod's shared process namespace), or has
 * not started within SECONDS, the command does not run: the wrapper says why,
 * leaves `pull.failed` for oras-push, and exits NOT_RUN_EXIT_CODE.
 *
 * Then it runs the argv after `--` exactly as given ("$@", never re-split),
 * forwards TERM, INT, HUP, QUIT, USR1 and USR2 to it, writes the exit code
 * into the state directory, and exits with that code. A non-interactive
 * shell starts background commands with INT and QUIT ignored, so those two
 * reach only commands that install their own handlers.
 *
 * @internal Not part of the jsii API; the runtime imports it directly.
 */

/** Files of the state directory (the volume `oras-runtime`) that oras-pull, the wrapper and oras-push share. */
export const StateFile = {
  /** oras-pull's PID in the pod's process namespace, written when it starts. */
  PULL_PID: 'pull.pid',
  /** The inputs and the digests they were pulled at; oras-pull writes it last, so it also says "every input is in place". */
  INPUTS: 'inputs.json',
  /** Why the inputs are not there: written by oras-pull, or by the wrapper when oras-pull vanished or never started. */
  PULL_FAILED: 'pull.failed',
  /** The wrapper's PID, written before it waits for the inputs. */
  WRAPPER_PID: 'wrapper.pid',
  /** The command's exit code, written when it has ended. */
  EXIT_CODE: 'exit-code',
  /** The FIFO that copies stdout into a file. */
  STDOUT_FIFO: 'stdout.fifo',
} as const;

/** The wrapper's exit code when the command did not run because its inputs are not there (as `env` and `timeout` use 125). */
export const NOT_RUN_EXIT_CODE = 125;

export const WRAPPER_SCRIPT = `# oras-wrap (cdk8s-oras): runs a step's command as given and records how it ended.
# Usage: sh -c "$script" oras-wrap --state DIR [--stdout FILE] [--await-pull SECONDS] -- COMMAND [ARG]...
state=
stdout_file=
await_pull=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --state) state=$2; shift 2 ;;
    --stdout) stdout_file=$2; shift 2 ;;
    --await-pull) await_pull=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "oras-wrap: unknown option $1" >&2; exit 126 ;;
  esac
done
if [ -z "$state" ] || [ "$#" -eq 0 ]; then
  echo "oras-wrap: usage: oras-wrap --state DIR [--stdout FILE] [--await-pull SECONDS] -- COMMAND [ARG]..." >&2
  exit 126
fi

echo "$$" > "$state/${StateFile.WRAPPER_PID}"

if [ -n "$await_pull" ]; then
  not_run() {
    [ -e "$state/${StateFile.PULL_FAILED}" ] || printf '%s\\n' "$1" > "$state/${StateFile.PULL_FAILED}"
    echo "oras-wrap: the command did not run: \${1%.}. The log of container oras-pull says more: kubectl logs \${HOSTNAME:-<pod>} -c oras-pull" >&2
    exit ${NOT_RUN_EXIT_CODE}
  }
  pid=
  waited=0
  tick=0.05
  ms=50
  until [ -e "$state/${StateFile.INPUTS}" ]; do
    if [ -e "$state/${StateFile.PULL_FAILED}" ]; then
      IFS= read -r reason < "$state/${StateFile.PULL_FAILED}"
      not_run "its inputs could not be pulled: $reason"
    fi
    [ -n "$pid" ] || [ ! -s "$state/${StateFile.PULL_PID}" ] || read -r pid < "$state/${StateFile.PULL_PID}"
    if [ -n "$pid" ] && [ ! -d "/proc/$pid" ]; then
      # It may have left its marker just before it ended.
      [ -e "$state/${StateFile.INPUTS}" ] || [ -e "$state/${StateFile.PULL_FAILED}" ] \\
        || not_run "oras-pull ended without pulling its inputs (killed by SIGKILL, the OOM killer or the node)"
    elif [ -z "$pid" ] && [ "$waited" -ge "$((await_pull * 1000))" ]; then
      not_run "oras-pull did not start within $await_pull s"
    else
      [ "$waited" -lt 2000 ] || { tick=1; ms=1000; }
      sleep "$tick" 2>/dev/null || { tick=1; ms=1000; sleep 1 2>/dev/null || ms=1; }
      waited=$((waited + ms))
    fi
  done
fi

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
  fifo="$state/${StateFile.STDOUT_FIFO}"
  if ! mkfifo "$fifo"; then
    echo "oras-wrap: the image needs mkfifo and tee to copy stdout to $stdout_file" >&2
    printf '%s\\n' 126 > "$state/${StateFile.EXIT_CODE}"
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
printf '%s\\n' "$code" > "$state/${StateFile.EXIT_CODE}"
exit "$code"
`;

/**
 * WRAPPER_SCRIPT as the pod spec carries it: the kubelet expands `$(VAR)` and
 * reduces `$$` to `$` in a container's command and args, so every `$` is
 * doubled (else `$$`, the shell's PID, would reach the shell as `$`).
 */
export const WRAPPER_SCRIPT_IN_SPEC = WRAPPER_SCRIPT.replace(/\$/g, '$$$$');
