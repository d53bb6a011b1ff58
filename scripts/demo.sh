#!/usr/bin/env bash
# The quick start: builds mod_modelgate, starts the mock model server and
# Debian's apache2 (not the system service) with conf-examples/quickstart.conf
# on 127.0.0.1, and shows a demo key going from 200 to 429.
#
#   bash scripts/demo.sh          start (or restart) and show the limit
#   bash scripts/demo.sh stop     stop both servers
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)

export MG_RUN=${MG_RUN:-/tmp/modelgate-demo}
export MG_PORT=${MG_PORT:-8080}
export MG_BACKEND_PORT=${MG_BACKEND_PORT:-8081}
export MG_MODULE=$TOP/.libs/mod_modelgate.so
export MG_CONF=$TOP/conf-examples
KEY=mg-quickstart-demo-key
URL=http://127.0.0.1:$MG_PORT

stop() {
    if [ -f "$MG_RUN/httpd.pid" ]; then
        /usr/sbin/apache2 -d "$MG_RUN" -f "$MG_CONF/quickstart.conf" -k stop 2>/dev/null || true
        for _ in $(seq 50); do [ -f "$MG_RUN/httpd.pid" ] || break; sleep 0.1; done
    fi
    if [ -f "$MG_RUN/mock.pid" ]; then
        kill "$(cat "$MG_RUN/mock.pid")" 2>/dev/null || true
        rm -f "$MG_RUN/mock.pid"
    fi
}

if [ "${1:-}" = "stop" ]; then
    stop
    echo "demo stopped"
    exit 0
fi

bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
stop
mkdir -p "$MG_RUN"
chmod 755 "$MG_RUN"

/usr/bin/python3 tests/mock_backend/mock_model.py --host 127.0.0.1 --port "$MG_BACKEND_PORT" \
    --name sentiment --quiet --pidfile "$MG_RUN/mock.pid" > "$MG_RUN/mock.out" 2>&1 &
for _ in $(seq 100); do grep -q LISTENING "$MG_RUN/mock.out" 2>/dev/null && break; sleep 0.1; done

/usr/sbin/apache2 -d "$MG_RUN" -f "$MG_CONF/quickstart.conf" -t
/usr/sbin/apache2 -d "$MG_RUN" -f "$MG_CONF/quickstart.conf" -k start
for _ in $(seq 100); do curl -s -o /dev/null "$URL/" && break; sleep 0.1; done

echo
echo "mod_modelgate is running on $URL in front of a mock model server on :$MG_BACKEND_PORT."
echo "The demo key may make 10 requests per minute:"
echo
for i in $(seq 1 11); do
    line=$(curl -s -o /dev/null -w '%{http_code} %header{ratelimit}' \
        -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
        -d '{"model":"sentiment","messages":[{"role":"user","content":"I love this product"}]}' \
        "$URL/v1/chat/completions")
    printf '  request %2d -> %s\n' "$i" "$line"
done
echo
echo "The 12th, in full:"
echo
curl -s -i -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
    -d '{"model":"sentiment","messages":[{"role":"user","content":"and again"}]}' \
    "$URL/v1/chat/completions" | sed 's/^/  /'
echo
echo
echo "Try:   curl -i -H 'X-API-Key: $KEY' $URL/v1/models"
echo "Logs:  $MG_RUN/access.log  $MG_RUN/error.log"
echo "Stop:  bash scripts/demo.sh stop"
