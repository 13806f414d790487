#!/usr/bin/env bash
# Fuzzes the running server against its own OpenAPI document with schemathesis: every response
# must be documented (status and JSON schema) and no request may get a 5xx.
#
# Builds `gongji`, serves a fresh data directory on a free local port, runs a bounded
# schemathesis run with the admin token, stops the server and exits non-zero on any failure.
#
# Environment (all optional):
#   ST_MAX_EXAMPLES   test cases per operation and phase (default 40)
#   ST_TIME_LIMIT     hard limit of the schemathesis run in seconds (default 240)
#   ST_SEED           seed for a reproducible run (default: random, printed by schemathesis)
#   ST_WORKERS        concurrent workers (default 1: with two, hypothesis on CPython 3.11.7 can
#                     fail with "AST constructor recursion depth mismatch", a CPython bug in
#                     concurrent ast.parse, not a finding about the server)
#   CARGO_TARGET_DIR  where cargo builds (default: target)
#   GONGJI_BIN        a prebuilt `gongji` to run instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
max_examples="${ST_MAX_EXAMPLES:-40}"
time_limit="${ST_TIME_LIMIT:-240}"
workers="${ST_WORKERS:-1}"

# schemathesis 4.x: its CLI flags differ from 3.x.
st_major() { st --version 2>/dev/null | grep -oE '[0-9]+' | head -n1; }
if ! command -v st >/dev/null 2>&1 || [ "$(st_major)" != "4" ]; then
  echo "== installing schemathesis"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
  # pip puts the `st` script beside the interpreter; pyenv needs a rehash to shim it.
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
  hash -r
fi
st --version

if [ -n "${GONGJI_BIN:-}" ]; then
  bin="$GONGJI_BIN"
else
  echo "== building gongji"
  cargo build --quiet -p gongji
  bin="${CARGO_TARGET_DIR:-target}/debug/gongji"
fi

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
"$bin" serve --data "$tmp/data" --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
server_pid=$!

echo "== waiting for $base/healthz"
for _ in $(seq 1 100); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS "$base/healthz" >/dev/null || { echo "no /healthz after 20 s" >&2; cat "$tmp/server.log" >&2; exit 1; }
token="$(cat "$tmp/data/admin.token")"

# Seed a few things the document's examples name (persons P440106001..3, institution
# H44010600001, bindings 1 and 2, settlement 1, transfer 1, token 2), so that example requests
# and reads reach real data. The first write's inf_time moves the engine clock to 10:00 CST
# tomorrow, so that wallet transfers are never in the closed hours during the run.
echo "== seeding"
BASE="$base" TOKEN="$token" python3 - <<'PY'
import datetime, json, os, sys, urllib.error, urllib.request

base, token = os.environ["BASE"], os.environ["TOKEN"]
cst = datetime.timezone(datetime.timedelta(hours=8))
tomorrow = (datetime.datetime.now(cst) + datetime.timedelta(days=1)).date()
inf_time = f"{tomorrow} 10:00:00"
inst = "H44010600001"
seeds = [
    ("/v1/institutions", {"msgid": "seed-inst-1", "fixmedins_code": inst,
                          "fixmedins_name": "Seed hospital", "fixmedins_type": "1",
                          "admdvs": "440106", "inf_time": inf_time}),
    ("/v1/persons", {"msgid": "seed-person-1", "psn_no": "P440106001",
                     "certno": "440106198001010019", "psn_name": "Giver", "insutype": "310",
                     "admdvs": "440106"}),
    ("/v1/persons", {"msgid": "seed-person-2", "psn_no": "P440106002",
                     "certno": "440106201001010021", "psn_name": "Child", "insutype": "310",
                     "admdvs": "440106"}),
    ("/v1/persons", {"msgid": "seed-person-3", "psn_no": "P440106003",
                     "certno": "440106195001010031", "psn_name": "Parent", "insutype": "390",
                     "admdvs": "440106"}),
    ("/v1/credits", {"msgid": "seed-credit-1", "period": "2025-05",
                     "items": [{"psn_no": "P440106001", "amount": "3000.00"},
                               {"psn_no": "P440106002", "amount": "300.00"}]}),
    ("/v1/bindings", {"msgid": "seed-bind-1", "giver_psn_no": "P440106001",
                      "receiver_psn_no": "P440106002", "relation": "child"}),
    ("/v1/bindings", {"msgid": "seed-bind-2", "giver_psn_no": "P440106001",
                      "receiver_psn_no": "P440106003", "relation": "parent"}),
    ("/v1/persons/P440106002/wallet", {"msgid": "seed-wallet-2"}),
    ("/v1/settlements", {"msgid": "H44010600001202505201000000001", "fixmedins_code": inst,
                         "psn_no": "P440106002", "medfee_sumamt": "500.00",
                         "fund_pay_sumamt": "300.00"}),
    ("/v1/wallet/transfers", {"msgid": "seed-transfer-1", "from_psn_no": "P440106001",
                              "to_psn_no": "P440106002", "amount": "100.00"}),
    ("/v1/tokens", {"msgid": "seed-token-2", "role": "institution", "fixmedins_code": inst}),
]
failed = False
for path, body in seeds:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if status != 200:
        failed = True
        print(f"seed POST {path} -> {status} {text}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY

seed_args=()
if [ -n "${ST_SEED:-}" ]; then
  seed_args=(--seed "$ST_SEED")
fi

# Revoking tokens is left out: the fuzzer would soon revoke the admin token it runs with
# (token ids are small integers) and every later request would be a 401.
echo "== schemathesis ($max_examples examples per operation, at most ${time_limit} s)"
status=0
# From the temporary directory: schemathesis and hypothesis leave caches in the working directory.
(cd "$tmp" && timeout --signal=INT --kill-after=10 "$time_limit" \
  st run "$base/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --workers "$workers" \
    --request-timeout 10 \
    --exclude-operation-id revokeToken \
    --header "Authorization: Bearer $token" \
    --no-color \
    --generation-database none \
    "${seed_args[@]}") || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -n 50 "$tmp/server.log" >&2
  status=1
fi
if grep -q "panicked" "$tmp/server.log"; then
  echo "the server panicked:" >&2
  grep -A5 "panicked" "$tmp/server.log" >&2
  status=1
fi
if [ "$status" = 124 ] || [ "$status" = 130 ]; then
  echo "schemathesis did not finish within ${time_limit} s" >&2
fi
if [ "$status" != 0 ]; then
  echo "== schemathesis: FAILED (exit $status)" >&2
  exit "$status"
fi
echo "== schemathesis: ok"
