#!/usr/bin/env bash
# Re-records the pcap test captures in this directory.
#
#   sudo bash auditor/tests/data/record-captures.sh            # all scenarios
#   sudo bash auditor/tests/data/record-captures.sh websocket  # only some
#
# Scenarios: nginx (nginx-curl.pcap), websocket (websocket-python.pcap),
# h2c (h2c-curl-nghttpx.pcap).
#
# Needs root and the Debian packages: tcpdump nginx-light python3-websockets
# nghttp2-server nghttp2-proxy curl iproute2.
#
# Everything runs inside a private network namespace created here and removed
# on exit; servers and clients talk over that namespace's loopback only
# (127.0.0.1), so no packet leaves it.
set -euo pipefail

DATA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}" # Debian's python3, which has python3-websockets
NS="ua-record-$$"
TMP=""
PIDS=()

log() { printf '[record] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]:+${PIDS[@]}}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]:+${PIDS[@]}}"; do
        wait "$pid" 2>/dev/null || true
    done
    if ip netns list 2>/dev/null | grep -qw -- "$NS"; then
        # Anything still running in our namespace was started by this script
        # (e.g. an nginx worker): end it by pid before deleting the namespace.
        for pid in $(ip netns pids "$NS" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns delete "$NS" || log "warning: could not delete namespace $NS"
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $(id -u) -eq 0 ]] || die "run as root (sudo bash $0)"
for tool in ip tcpdump nginx nghttpd nghttpx curl ss "$PYTHON"; do
    command -v "$tool" >/dev/null || die "missing $tool (see the package list at the top)"
done
"$PYTHON" -c 'import websockets' 2>/dev/null || die "$PYTHON cannot import websockets (apt-get install python3-websockets)"

in_ns() { ip netns exec "$NS" "$@"; }

# start_bg NAME CMD...: start CMD in the namespace in the background, stdout and
# stderr to $TMP/NAME.log; sets STARTED_PID. `ip netns exec` execs the command,
# so the pid is the command's own (run it directly, not through in_ns, or the
# pid would be a subshell's). Note background jobs get SIGINT/SIGQUIT ignored
# unless the program sets its own handlers (tcpdump and nginx do).
start_bg() {
    local name=$1; shift
    ip netns exec "$NS" "$@" >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# stop_pid PID [SIGNAL]: signal one of our processes and reap it.
stop_pid() {
    local pid=$1 sig=${2:-TERM}
    kill -"$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_listen PORT: until something listens on 127.0.0.1:PORT in the namespace.
wait_listen() {
    local port=$1 i
    for i in $(seq 1 100); do
        if [[ -n "$(in_ns ss -Hltn "sport = :$port")" ]]; then
            return 0
        fi
        sleep 0.05
    done
    die "nothing listening on port $port after 5 s"
}

TCPDUMP_PID=""
TCPDUMP_NAME=""
# capture_start NAME FILTER: tcpdump on the namespace's lo into $TMP/NAME.
capture_start() {
    TCPDUMP_NAME=$1
    local filter=$2 i
    # -Z root: stay root so it can write into the private temp dir.
    ip netns exec "$NS" tcpdump -i lo -n -U --immediate-mode -Z root -w "$TMP/$TCPDUMP_NAME" "$filter" \
        2>"$TMP/$TCPDUMP_NAME.tcpdump.log" &
    TCPDUMP_PID=$!
    PIDS+=("$TCPDUMP_PID")
    for i in $(seq 1 100); do
        if grep -q 'listening on' "$TMP/$TCPDUMP_NAME.tcpdump.log" 2>/dev/null; then
            sleep 0.2
            return 0
        fi
        kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$TMP/$TCPDUMP_NAME.tcpdump.log" >&2; die "tcpdump exited"; }
        sleep 0.05
    done
    die "tcpdump not ready after 5 s"
}

# capture_stop: SIGINT tcpdump, wait, move the file into $DATA_DIR.
capture_stop() {
    sleep 0.3 # let the last FIN/ACKs through
    kill -INT "$TCPDUMP_PID"
    local rc=0 i
    for i in $(seq 1 100); do
        kill -0 "$TCPDUMP_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$TCPDUMP_PID" 2>/dev/null && die "tcpdump did not stop on SIGINT"
    wait "$TCPDUMP_PID" || rc=$?
    [[ $rc -eq 0 ]] || { cat "$TMP/$TCPDUMP_NAME.tcpdump.log" >&2; die "tcpdump exited with $rc"; }
    grep -E 'captured|dropped' "$TMP/$TCPDUMP_NAME.tcpdump.log" | sed "s/^/[record] $TCPDUMP_NAME: /" >&2 || true
    if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$TMP/$TCPDUMP_NAME.tcpdump.log"; then
        die "$TCPDUMP_NAME: kernel dropped packets"
    fi
    local size
    size=$(stat -c %s "$TMP/$TCPDUMP_NAME")
    (( size < 100 * 1024 )) || die "$TCPDUMP_NAME is $size bytes (limit 100 KB)"
    mv -f -- "$TMP/$TCPDUMP_NAME" "$DATA_DIR/$TCPDUMP_NAME"
    chmod 0644 "$DATA_DIR/$TCPDUMP_NAME"
    chown --reference="$DATA_DIR" "$DATA_DIR/$TCPDUMP_NAME" 2>/dev/null || true
    log "wrote $DATA_DIR/$TCPDUMP_NAME ($size bytes)"
}

# --- scenario a: nginx + curl -------------------------------------------------
record_nginx() {
    local dir="$TMP/nginx"
    mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
    printf 'static file a\n' >"$dir/www/a"
    # nginx workers run as nobody: they must be able to reach the document root.
    chmod 0755 "$TMP"
    chmod -R a+rX "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type text/plain;
    keepalive_timeout 30s;
    server {
        listen 127.0.0.1:8080;
        server_name localhost;
        root $dir/www;
        location = /a { }
        location = /b { return 200 "return b\n"; }
        location = /post { return 200 "posted\n"; }
        location = /ws { return 200 "no websocket here\n"; }
        location / { return 404; }
    }
}
EOF
    in_ns nginx -t -q -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf"
    capture_start nginx-curl.pcap 'tcp port 8080'
    start_bg nginx nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf"
    local nginx_pid=$STARTED_PID
    wait_listen 8080
    # 1+2: two GETs over one keep-alive connection (curl reuses it; checked
    # below: 200 on a new connection, then 200 on no new connection).
    local out
    out=$(in_ns curl -sS --max-time 10 --fail --fail-early -o /dev/null -o /dev/null \
        -w '%{http_code}:%{num_connects} ' \
        http://127.0.0.1:8080/a http://127.0.0.1:8080/b)
    [[ $out == "200:1 200:0 " ]] || die "keep-alive GETs gave '$out'"
    # 3: a POST with a small form body.
    in_ns curl -sS --max-time 10 --fail -o /dev/null -d 'name=auditor&n=1' http://127.0.0.1:8080/post
    # 4: a WebSocket upgrade offer; nginx is not set up to proxy it, so it
    # answers with an ordinary 200.
    in_ns curl -sS --max-time 10 --fail -o /dev/null \
        -H 'Upgrade: websocket' -H 'Connection: Upgrade' \
        -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Version: 13' \
        http://127.0.0.1:8080/ws
    capture_stop
    stop_pid "$nginx_pid" QUIT
}

# --- scenario b: python3-websockets server + client ---------------------------
record_websocket() {
    local dir="$TMP/ws"
    mkdir -p "$dir"
    cat >"$dir/server.py" <<'EOF'
import asyncio
import websockets

async def handler(ws):
    async for message in ws:
        await ws.send("reply to " + message)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 8765,
                                compression=None, ping_interval=None):
        await asyncio.Future()

asyncio.run(main())
EOF
    cat >"$dir/client.py" <<'EOF'
import asyncio
import websockets

async def main():
    async with websockets.connect("ws://127.0.0.1:8765/chat",
                                  compression=None, ping_interval=None) as ws:
        for text in ("hello one", "hello two"):
            await ws.send(text)
            print(await ws.recv())
    # leaving the block runs the closing handshake (code 1000)

asyncio.run(main())
EOF
    capture_start websocket-python.pcap 'tcp port 8765'
    start_bg ws-server "$PYTHON" "$dir/server.py"
    local server_pid=$STARTED_PID
    wait_listen 8765
    in_ns timeout 20 "$PYTHON" "$dir/client.py" >"$dir/client.out"
    [[ $(wc -l <"$dir/client.out") -eq 2 ]] || die "websocket client printed: $(cat "$dir/client.out")"
    capture_stop
    stop_pid "$server_pid"
}

# --- scenario c: curl --http2 h2c upgrade, answered by nghttpx -----------------
# nghttpd (nghttp2-server 1.52) speaks cleartext HTTP/2 with prior knowledge
# only: it does not answer an HTTP/1.1 "Upgrade: h2c" offer (it sends SETTINGS
# at once and curl fails with "Received HTTP/0.9"). nghttpx (nghttp2-proxy,
# same nghttp2 release) does, so it fronts nghttpd: curl -> nghttpx on 8081
# (h2c upgrade, captured) -> nghttpd on 8082 (h2 prior knowledge, not captured).
record_h2c() {
    local dir="$TMP/h2c"
    mkdir -p "$dir/htdocs"
    printf 'h2c file\n' >"$dir/htdocs/file"
    start_bg nghttpd nghttpd --no-tls -a 127.0.0.1 -d "$dir/htdocs" 8082
    local nghttpd_pid=$STARTED_PID
    wait_listen 8082
    capture_start h2c-curl-nghttpx.pcap 'tcp port 8081'
    start_bg nghttpx nghttpx --conf=/dev/null --single-process --workers=1 \
        --frontend='127.0.0.1,8081;no-tls' --backend='127.0.0.1,8082;;proto=h2' \
        --pid-file="$dir/nghttpx.pid" --errorlog-file="$dir/nghttpx.err" \
        --accesslog-file="$dir/nghttpx.access"
    local nghttpx_pid=$STARTED_PID
    wait_listen 8081
    local out
    out=$(in_ns curl -sS --max-time 10 --fail --http2 -o "$dir/got" \
        -w '%{http_code} %{http_version}' http://127.0.0.1:8081/file)
    [[ $out == "200 2" ]] || die "h2c request gave '$out' (want 200 over HTTP/2)"
    cmp -s "$dir/got" "$dir/htdocs/file" || die "h2c download differs"
    capture_stop
    stop_pid "$nghttpx_pid"
    stop_pid "$nghttpd_pid"
}

# --- main ---------------------------------------------------------------------
scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(nginx websocket h2c)

TMP="$(mktemp -d /tmp/ua-record.XXXXXX)"
ip netns add "$NS"
in_ns ip link set lo up
log "namespace $NS, temp dir $TMP"

for s in "${scenarios[@]}"; do
    case "$s" in
        nginx) record_nginx ;;
        websocket) record_websocket ;;
        h2c) record_h2c ;;
        *) die "unknown scenario '$s' (nginx, websocket, h2c)" ;;
    esac
done
log "done"
