/**
 * The command wrapper of the app container, passed inline by injectOras
 * (`/bin/sh -c "$WRAPPER_SCRIPT" oras-wrap --state DIR … -- argv`). It is
 * POSIX sh, so any image with /bin/sh can run it; it uses shell builtins,
 * plus `sleep` while it waits for the inputs (whole seconds when `sleep`
 * takes no fractions, a busy wait without one), mkfifo and tee when the
 * step sends stdout to a file, and mkdir and cp when it copies files.
 *
 * With `--await-pull SECONDS` it first waits for the container oras-pull,
 * which runs beside it: polling every 50 ms for two seconds, then every
 * second, until oras-pull leaves `inputs.json` (every input is in place).
 * When oras-pull leaves `memoized` instead (the output exists for this
 * step's key), the command does not run and the wrapper exits 0. When
 * oras-pull leaves `pull.failed`, ends without a marker (SIGKILL,
 * OOM kill: its PID is gone from the pod's shared process namespace), or has
 * not started within SECONDS, the command does not run: the wrapper says why,
 * leaves `pull.failed` for oras-push, and exits NOT_RUN_EXIT_CODE.
 *
 * `--copy-in SRC=DEST` then copies what oras-pull staged in SRC into DEST,
 * resolved against the directory the shell starts in (the container's
 * working directory, the image's WORKDIR when the pod sets none), next to
 * what the image keeps there. `--copy-out SRC=DEST` copies the output after
 * the command as `cp -R SRC DEST/` does: a file or a directory under its
 * own name, the contents for `.`. So no volume covers a path where the image
 * has content (the webhook's way; typed steps mount volumes instead).
 *
 * Then it runs the argv after `--` exactly as given ("$@", never re-split),
 * forwards TERM, INT, HUP, QUIT, USR1 and USR2 to it, writes the exit code
 * into the state directory, and exits with that code. A non-interactive
 * shell starts background commands with INT and QUIT ignored, so those two
 * reach only commands that install their own handlers. With `--id NAME`
 * (one of several app containers in a pod) the files it writes are
 * `NAME.<file>` (wrapperFile).
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
  /** Why the output could not be copied out for oras-push; written before the exit code. */
  OUTPUT_FAILED: 'output.failed',
  /** A memoized step whose key has no output yet: the key, whose memo tag oras-push also stores the output under. oras-pull writes it before inputs.json. */
  MEMO: 'memo.json',
  /** The command need not run: its output exists for its key. The first line names that output. oras-pull writes it instead of inputs.json. */
  MEMOIZED: 'memoized',
} as const;

/** The name of a file the wrapper writes: `NAME.<file>` for the app container NAME when a pod has several (`--id`). */
export function wrapperFile(file: string, id?: string): string {
  return id === undefined ? file : `${id}.${file}`;
}

/** Where the runtime's volumes are mounted in every container (reserved: nothing of the user's goes there). */
export const RUNTIME_MOUNT = '/oras';

/** The wrapper's exit code when the command did not run because its inputs are not there (as `env` and `timeout` use 125). */
export const NOT_RUN_EXIT_CODE = 125;

export const WRAPPER_SCRIPT = `# oras-wrap (cdk8s-oras): runs a step's command as given and records how it ended.
# Usage: sh -c "$script" oras-wrap --state DIR [--id NAME] [--stdout FILE] [--await-pull SECONDS]
#          [--copy-in SRC=DEST]... [--copy-out SRC=DEST] -- COMMAND [ARG]...
state=
own=
stdout_file=
await_pull=
copy_in=
copy_out=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --state) state=$2; shift 2 ;;
    --id) own="$2."; shift 2 ;;
    --stdout) stdout_file=$2; shift 2 ;;
    --await-pull) await_pull=$2; shift 2 ;;
    --copy-in) copy_in="$copy_in$2
"; shift 2 ;;
    --copy-out) copy_out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "oras-wrap: unknown option $1" >&2; exit 126 ;;
  esac
done
if [ -z "$state" ] || [ "$#" -eq 0 ]; then
  echo "oras-wrap: usage: oras-wrap --state DIR [--id NAME] [--stdout FILE] [--await-pull SECONDS] [--copy-in SRC=DEST]... [--copy-out SRC=DEST] -- COMMAND [ARG]..." >&2
  exit 126
fi

echo "$$" > "$state/\${own}${StateFile.WRAPPER_PID}"

# not_run REASON [WHAT TO DO]: the command does not run; oras-push learns why from pull.failed.
not_run() {
  [ -e "$state/${StateFile.PULL_FAILED}" ] || printf '%s\\n' "$1" > "$state/${StateFile.PULL_FAILED}"
  echo "oras-wrap: the command did not run: \${1%.}. \${2:-The log of container oras-pull says more: kubectl logs \${HOSTNAME:-<pod>} -c oras-pull}" >&2
  exit ${NOT_RUN_EXIT_CODE}
}
# Whether a directory, once resolved, is one the runtime keeps for itself.
reserved() {
  case "$(cd "$1" 2>/dev/null && pwd -P)" in
    ${RUNTIME_MOUNT}|${RUNTIME_MOUNT}/*) return 0 ;;
  esac
  return 1
}

if [ -n "$await_pull" ]; then
  pid=
  waited=0
  tick=0.05
  ms=50
  until [ -e "$state/${StateFile.INPUTS}" ]; do
    if [ -e "$state/${StateFile.MEMOIZED}" ]; then
      IFS= read -r from < "$state/${StateFile.MEMOIZED}"
      echo "oras-wrap: memoized: the output for these inputs exists ($from); the command did not run" >&2
      exit 0
    fi
    if [ -e "$state/${StateFile.PULL_FAILED}" ]; then
      IFS= read -r reason < "$state/${StateFile.PULL_FAILED}"
      not_run "its inputs could not be pulled: $reason"
    fi
    [ -n "$pid" ] || [ ! -s "$state/${StateFile.PULL_PID}" ] || read -r pid < "$state/${StateFile.PULL_PID}"
    if [ -n "$pid" ] && [ ! -d "/proc/$pid" ]; then
      # It may have left its marker just before it ended.
      [ -e "$state/${StateFile.INPUTS}" ] || [ -e "$state/${StateFile.PULL_FAILED}" ] || [ -e "$state/${StateFile.MEMOIZED}" ] \\
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

while IFS= read -r pair; do
  [ -n "$pair" ] || continue
  dest=\${pair#*=}
  if ! mkdir -p "$dest" || reserved "$dest" || ! cp -R "\${pair%%=*}/." "$dest/"; then
    not_run "its inputs could not be copied into \\"$dest\\" (resolved in $PWD)" \\
      "The input path must be a directory outside ${RUNTIME_MOUNT} that the container's user (uid $(id -u 2>/dev/null || echo '?')) can write: set input-path to one."
  fi
done <<END_OF_COPIES
$copy_in
END_OF_COPIES

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
  fifo="$state/\${own}${StateFile.STDOUT_FIFO}"
  case "$stdout_file" in */*) mkdir -p "\${stdout_file%/*}" ;; esac
  if ! mkfifo "$fifo"; then
    echo "oras-wrap: the image needs mkfifo and tee to copy stdout to $stdout_file" >&2
    printf '%s\\n' 126 > "$state/\${own}${StateFile.EXIT_CODE}"
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

if [ -n "$copy_out" ]; then
  src=\${copy_out%=*}
  dest=\${copy_out##*=}
  failed=
  if [ ! -e "$src" ] && [ ! -L "$src" ]; then
    failed="the output path \\"$src\\" does not exist in $PWD after the command"
  elif [ -d "$src" ] && { [ "$(cd "$src" && pwd -P)" = / ] || reserved "$src"; }; then
    failed="the output path \\"$src\\" (resolved in $PWD) is the root or under ${RUNTIME_MOUNT}; set output-path to the file or directory the command writes"
  elif ! { mkdir -p "$dest" && cp -R "$src" "$dest/"; }; then
    failed="the output path \\"$src\\" (resolved in $PWD) could not be copied for oras-push"
  fi
  if [ -n "$failed" ]; then
    echo "oras-wrap: $failed" >&2
    printf '%s\\n' "$failed" > "$state/\${own}${StateFile.OUTPUT_FAILED}"
    [ "$code" -ne 0 ] || code=1
  fi
fi
printf '%s\\n' "$code" > "$state/\${own}${StateFile.EXIT_CODE}"
exit "$code"
`;

/**
 * WRAPPER_SCRIPT as the pod spec carries it: the kubelet expands `$(VAR)` and
 * reduces `$$` to `$` in a container's command and args, so every `$` is
 * doubled (else `$$`, the shell's PID, would reach the shell as `$`).
 */
export const WRAPPER_SCRIPT_IN_SPEC = WRAPPER_SCRIPT.replace(/\$/g, '$$$$');
