#!/usr/bin/env bash
# Seeds the fuzz corpora from the RFC 4475 torture-test messages.
# Idempotent (files are overwritten, never duplicated); works from any cwd.
#
#   corpus/parse/<name>.dat          the message as is
#   corpus/edit/<name>.noop          0x00 ("no edit ops") + the message
#   corpus/edit/<name>.proxy         a proxy pass + the message: prepend_via,
#                                    prepend_record_route, pop_route,
#                                    set_max_forwards(69), then 0x00
#   corpus/edit/<name>.response      remove_top_via, then 0x00 + the message
#   corpus/uri/<name>                Request-URIs of the messages, and pairs
#                                    "a\0b" of the RFC 3261 19.1.4 examples
#   corpus/dispatcher_list/*         Kamailio dispatcher.list examples
#
# The edit prefixes follow the layout of fuzz_targets/edit.rs (arbitrary 1.x):
# a byte whose low bit says "another op", then the Op enum tag as a
# little-endian u32 scaled onto the variant count (10), then its fields.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fixtures="$here/../tests/fixtures/rfc4475"
corpus="$here/corpus"
mkdir -p "$corpus/parse" "$corpus/edit" "$corpus/uri"

# Op tags: variant k of 10 is the u32 ceil(k * 2^32 / 10), little-endian.
prepend_via='\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x39\x30'   # Canned(0, Some(12345))
prepend_rr='\x01\x34\x33\x33\x33\x00\x00\x00\x00\x03\x00'            # Canned(3, None)
pop_route='\x01\xcd\xcc\xcc\x4c'
set_mf='\x01\x67\x66\x66\x66\x45'                                    # 69
remove_top_via='\x01\x9a\x99\x99\x19'
stop='\x00'

n=0
for f in "$fixtures"/*.dat; do
    name="$(basename "$f" .dat)"
    cp "$f" "$corpus/parse/$name.dat"
    { printf "$stop"; cat "$f"; } >"$corpus/edit/$name.noop"
    { printf "$prepend_via$prepend_rr$pop_route$set_mf$stop"; cat "$f"; } >"$corpus/edit/$name.proxy"
    { printf "$remove_top_via$stop"; cat "$f"; } >"$corpus/edit/$name.response"
    # The Request-URI: second space-separated field of the first line.
    head -n1 "$f" | tr -d '\r' | awk '{print $2}' | tr -d '\n' >"$corpus/uri/$name.ruri"
    n=$((n + 1))
done

pair() { printf '%s\0%s' "$2" "$3" >"$corpus/uri/$1"; }
pair eq1 'sip:%61lice@atlanta.com;transport=TCP' 'sip:alice@AtLanTa.CoM;Transport=tcp'
pair eq2 'sip:carol@chicago.com' 'sip:carol@chicago.com;newparam=5'
pair eq3 'sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com' \
    'sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com'
pair eq4 'sip:alice@atlanta.com?subject=project%20x&priority=urgent' \
    'sip:alice@atlanta.com?priority=urgent&subject=project%20x'
pair ne1 'SIP:ALICE@AtLanTa.CoM;Transport=udp' 'sip:alice@AtLanTa.CoM;Transport=UDP'
pair ne2 'sip:bob@biloxi.com' 'sip:bob@biloxi.com:5060'
pair ne3 'sip:a%3Bb@host' 'sip:a;b@host'
pair tel 'tel:+1-201-555-0123;phone-context=example.com' 'tel:+12015550123;PHONE-CONTEXT=example.com'
pair v6 'sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?subject=hi&x=y' 'sips:alice:secret@[2001:DB8:0::10]:5061;lr;transport=TCP?x=y&subject=hi'
pair other 'mailto:bob@example.com' 'MAILTO:bob@example.com'

mkdir -p "$corpus/dispatcher_list"
printf '%s\n' '# setid destination flags priority attrs' \
    '1 sip:127.0.0.1:5080 0 0 duid=fs1;weight=50' \
    '1 sip:[::1]:5090;transport=udp 8 10 duid=fs2;maxload=20;rweight=30' \
    '2 sip:media.example.net 0 0 socket=udp:127.0.0.1:5060;ping_from=sip:edge@example.net' \
    >"$corpus/dispatcher_list/basic.list"
printf '1 sip:10.0.0.1:5060\r\n\t2 sips:h.example.com:5061 2 5\r\n' >"$corpus/dispatcher_list/crlf.list"

mkdir -p "$corpus/rpc_request"
rpc() { printf '%s' "$2" >"$corpus/rpc_request/$1.json"; }
rpc list '{"jsonrpc":"2.0","method":"dispatcher.list","id":1}'
rpc set_state '{"jsonrpc":"2.0","method":"dispatcher.set_state","params":["i",1,"sip:192.0.2.1:5060"],"id":2}'
rpc drain '{"jsonrpc":"2.0","method":"dispatcher.drain","params":{"group":"1","address":"a"},"id":"x"}'
rpc add '{"jsonrpc":"2.0","method":"dispatcher.add","params":[2,"sip:[::1]:5080",8,3,"duid=b;weight=20"],"id":3}'
rpc remove '{"jsonrpc":"2.0","method":"dispatcher.remove","params":[1,"sip:192.0.2.1:5060"],"id":4}'
rpc ping '{"jsonrpc":"2.0","method":"dispatcher.ping_active","params":[0],"id":5}'
rpc stats '{"jsonrpc":"2.0","method":"stats.get_statistics","params":["core:","tm:created"],"id":6}'
rpc tm '{"jsonrpc":"2.0","method":"tm.stats"}'

mkdir -p "$corpus/config"
# The commented defaults of `edge --print-config`, uncommented examples included.
sed -n '/^pub const DEFAULT_CONFIG_TOML/,/^"#;/p' "$here/../src/config.rs" | sed '1d;$d' \
    >"$corpus/config/defaults.toml"
sed 's/^# \([a-z_]* = \)/\1/' "$corpus/config/defaults.toml" >"$corpus/config/uncommented.toml"

echo "seeded $n messages into $corpus/{parse,edit} and URIs into $corpus/uri"
