-- Palisade benchmark flow set for Pktgen-DPDK (https://github.com/pktgen/Pktgen-DPDK), range
-- mode, on one transmit port facing a Palisade box with physical NICs.
--
-- Reproduces the flow set of `palisade-pktgen --flows count=10000 --size 64` (the harness's
-- `forward` and `protect-10k` scenarios): FLOWS UDP flows from SRC_IP to DST_IP, one per source port, allowed flows
-- to DPORT, denied flows (ALLOWED_PERCENT below 100) to DENY_DPORT. See
-- bench/profiles/README.md for how to run it and what differs from palisade-pktgen.
--
-- Run: pktgen <EAL args> -- -P -m "[1:2].0" -f bench/profiles/pktgen/palisade.lua
-- then `start 0` (or pktgen.start(TX_PORT) from a script), `stop 0` to stop.
--
-- How Pktgen's range mode maps onto the flow set (bench/src/pktgen/flows.rs):
-- * Every range field steps once per packet (value += inc; past max it goes back to min).
--   Only the source port steps here, over FLOWS consecutive ports, so the set is exactly
--   FLOWS 5-tuples, sent round robin, each at the same rate: the same count, addresses and
--   classes as palisade-pktgen, but source ports SPORT_FIRST .. SPORT_FIRST+FLOWS-1 in order
--   where palisade-pktgen spreads them over SPORT_FIRST..SPORT_LAST with a seeded
--   permutation. Range mode has no multiply or modulo, so the permutation (and `seed`)
--   cannot be expressed; a firewall's flow table sees the same number of distinct flows.
-- * Classes: one range stream has one destination-port field. ALLOWED_PERCENT = 100 sends
--   DPORT only, 0 sends DENY_DPORT only, 50 steps the port DENY_DPORT, DPORT, DENY_DPORT, ...
--   (DENY_DPORT must be DPORT + 1): with an even FLOWS every source port keeps one class,
--   every other flow denied, as palisade-pktgen's `allowed=50%` does (slot s allowed iff s is
--   odd). Other shares cannot be expressed in one range stream: the script stops with an
--   error.
-- * No new-flow rotation (`new=`): the set never changes.
-- * No IMIX: range mode steps the size arithmetically; one fixed FRAME_SIZE per run.
-- * IPv4 only: the Lua range bindings parse IPv4 addresses.
-- * Frames carry Pktgen's payload, not palisade-pktgen's stamp: loss per class and latency
--   come from the Palisade box's counters (or Pktgen's port stats), not from a stamp.

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;../?.lua"
require "Pktgen"

-- palisade:flowspec begin (bench/tests/profiles.rs reads these lines: keep `local NAME = value`)
local FLOWS = 10000
local PROTO = "udp"
local SRC_IP = "198.18.0.1"
local DST_IP = "198.19.0.1"
local SPORT_FIRST = 1024
local SPORT_LAST = 65535
local DPORT = 5201
local DENY_DPORT = 5202
local ALLOWED_PERCENT = 100
local FRAME_SIZE = 64
-- palisade:flowspec end

-- The port that sends, the Palisade box's MAC on that link, and the rate (% of line rate).
local TX_PORT = "0"
local DST_MAC = "02:00:00:00:00:02"
local RATE_PERCENT = 100

local function fail(msg)
  error("palisade.lua: " .. msg, 0)
end

if FLOWS < 1 then
  fail("FLOWS must be at least 1")
end
if FLOWS > SPORT_LAST - SPORT_FIRST + 1 then
  fail(string.format(
    "%d flows need %d source ports but SPORT_FIRST..SPORT_LAST holds %d: range mode varies one field per flow here",
    FLOWS, FLOWS, SPORT_LAST - SPORT_FIRST + 1))
end
if FRAME_SIZE < 64 or FRAME_SIZE > 1518 then
  fail("FRAME_SIZE (with FCS) must be in 64..1518 for Pktgen's range mode")
end

-- Destination port field: start, min, max, inc.
local dport
if ALLOWED_PERCENT == 100 then
  dport = { DPORT, DPORT, DPORT, 0 }
elseif ALLOWED_PERCENT == 0 then
  dport = { DENY_DPORT, DENY_DPORT, DENY_DPORT, 0 }
elseif ALLOWED_PERCENT == 50 then
  if DENY_DPORT ~= DPORT + 1 then
    fail("ALLOWED_PERCENT = 50 needs DENY_DPORT = DPORT + 1 (the port field steps between them)")
  end
  if FLOWS % 2 ~= 0 then
    fail("ALLOWED_PERCENT = 50 needs an even FLOWS, or a source port would be sent in both classes")
  end
  dport = { DENY_DPORT, DPORT, DENY_DPORT, 1 }
else
  fail("ALLOWED_PERCENT must be 100, 50 or 0 in Pktgen's range mode (see the header)")
end

local function range_field(set, start, min, max, inc)
  set(TX_PORT, "start", start)
  set(TX_PORT, "min", min)
  set(TX_PORT, "max", max)
  set(TX_PORT, "inc", inc)
end

pktgen.set_proto(TX_PORT, PROTO)
pktgen.range.ip_proto(TX_PORT, PROTO)
pktgen.range.dst_mac(TX_PORT, "start", DST_MAC)

range_field(pktgen.range.src_ip, SRC_IP, SRC_IP, SRC_IP, "0.0.0.0")
range_field(pktgen.range.dst_ip, DST_IP, DST_IP, DST_IP, "0.0.0.0")
range_field(pktgen.range.src_port, SPORT_FIRST, SPORT_FIRST, SPORT_FIRST + FLOWS - 1, 1)
range_field(pktgen.range.dst_port, dport[1], dport[2], dport[3], dport[4])
-- Sizes count the FCS, as palisade-pktgen's do (Pktgen subtracts it itself).
range_field(pktgen.range.pkt_size, FRAME_SIZE, FRAME_SIZE, FRAME_SIZE, 0)

pktgen.set(TX_PORT, "rate", RATE_PERCENT)
pktgen.set(TX_PORT, "count", 0)
pktgen.set_range(TX_PORT, "on")

printf(
  "palisade.lua: port %s: %d %s flows %s:%d-%d -> %s:%s, %d%% allowed, %d-byte frames; `start %s` to send\n",
  TX_PORT, FLOWS, PROTO, SRC_IP, SPORT_FIRST, SPORT_FIRST + FLOWS - 1, DST_IP,
  (dport[4] == 0) and tostring(dport[1]) or (DPORT .. "/" .. DENY_DPORT),
  ALLOWED_PERCENT, FRAME_SIZE, TX_PORT)
