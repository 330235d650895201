# Palisade benchmark flow set for TRex stateless (STL), on one TRex port facing a Palisade box
# with physical NICs.
#
# Reproduces `palisade-pktgen --flows count=10000 --size 64` (the harness's `forward` and `protect-10k` scenarios) by
# default; tunables change the flow count, frame size (or IMIX), allowed share, protocol and IP
# version. See bench/profiles/README.md for how to run it and how tunables map to
# `palisade-pktgen --flows` keys.
#
#   trex-console> start -f bench/profiles/trex/palisade.py -p 0 -m 10mpps \
#                   -t --flows 10000 --size 64 --allowed 80
#
# How the field engine maps onto the flow set (bench/src/pktgen/flows.rs):
# * Classes: the first n slots of palisade-pktgen's set hold floor(n * share) allowed ones, so
#   there are floor(FLOWS * share) allowed flows and the rest denied. Here each class is its
#   own stream (allowed to DPORT, denied to DENY_DPORT) with exactly that many flows, and the
#   streams' rates are in the ratio of their flow counts, so every flow is sent at the same
#   rate, as palisade-pktgen's round robin over slots does. The classes interleave as TRex
#   schedules the streams rather than slot by slot.
# * Flows in a class: an STLVmTupleGen over (source address, source port) limited to the
#   class's flow count: source addresses step fastest, then the source port, from SRC_IP and
#   SPORT_FIRST. palisade-pktgen reaches the same number of distinct 5-tuples in the same
#   ranges through a seeded permutation (`seed`), which the field engine (add, mask, no
#   multiply-modulo) cannot express; its tuples are the ones listed in order instead.
#   Destination address and port are fixed per class, as in the default spec.
# * IMIX: palisade-pktgen gives each flow one size (slot s gets IMIX_CYCLE[s % 12]); here each
#   class has three streams (64, 570, 1518 bytes at 7:4:1), so each flow is seen at every
#   size. The 7:4:1 byte and packet mix is the same.
# * No new-flow rotation (`new=`): the set never changes.
# * IPv6: the tuple generator's address is 32 bits; it is written into the low 32 bits of
#   the IPv6 source address, so a source range must stay inside one /96.
# * Frames carry TRex's padding, not palisade-pktgen's stamp; with --stats each stream gets a
#   TRex flow-stats group (allowed: pg_id 1-3, denied: 11-13) for per-class tx/rx counts.
# * Checksums: STLVmFixChecksumHw (NIC offload) after the field engine writes.
import argparse
import ipaddress

from trex_stl_lib.api import (
    CTRexVmInsFixHwCs,
    Ether,
    IP,
    IPv6,
    STLFlowStats,
    STLPktBuilder,
    STLScVmRaw,
    STLStream,
    STLTXCont,
    STLVmFixChecksumHw,
    STLVmTupleGen,
    STLVmWrFlowVar,
    TCP,
    UDP,
)

# palisade:flowspec begin (bench/tests/profiles.rs reads these lines: keep `NAME = value`)
FLOWS = 10000
PROTO = "udp"
SRC_IP = "198.18.0.1"
DST_IP = "198.19.0.1"
SRC_IP6 = "2001:2::1"
DST_IP6 = "2001:2:0:1::1"
SPORT_FIRST = 1024
SPORT_LAST = 65535
DPORT = 5201
DENY_DPORT = 5202
ALLOWED_PERCENT = 100
FRAME_SIZE = 64
IMIX_CYCLE = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 64, 570]
FCS_LEN = 4
# palisade:flowspec end

PPM = 1000000


def class_counts(flows, allowed_percent):
    """(allowed, denied) flows: floor(flows * share), as flows.rs's allowed_before."""
    ppm = int(round(allowed_percent * 10000))
    allowed = flows * ppm // PPM
    return allowed, flows - allowed


def imix_mix():
    """[(size, share)] of IMIX_CYCLE: 64, 570 and 1518 bytes at 7:4:1."""
    sizes = sorted(set(IMIX_CYCLE))
    return [(s, IMIX_CYCLE.count(s) / float(len(IMIX_CYCLE))) for s in sizes]


class PalisadeFlows(object):
    def __init__(self):
        pass

    @staticmethod
    def parse(tunables, kwargs):
        parser = argparse.ArgumentParser(
            prog="palisade.py",
            description="Palisade benchmark flow set (see bench/profiles/README.md)",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--flows", type=int, default=FLOWS, help="flows alive (count=)")
        parser.add_argument("--size", default=str(FRAME_SIZE),
                            help="frame size with FCS, 64..9000, or imix (--size)")
        parser.add_argument("--allowed", type=float, default=ALLOWED_PERCENT,
                            help="allowed share, percent (allowed=)")
        parser.add_argument("--proto", choices=["udp", "tcp"], default=PROTO, help="(proto=)")
        parser.add_argument("--ipv6", action="store_true",
                            help="IPv6 flows from SRC_IP6 to DST_IP6 (src=, dst=)")
        parser.add_argument("--src", default=None,
                            help="first source address (src=); default SRC_IP or SRC_IP6")
        parser.add_argument("--src-count", type=int, default=1,
                            help="source addresses from --src (src=A-B)")
        parser.add_argument("--dst", default=None,
                            help="destination address (dst=); default DST_IP or DST_IP6")
        parser.add_argument("--sport-first", type=int, default=SPORT_FIRST, help="(sport=)")
        parser.add_argument("--sport-last", type=int, default=SPORT_LAST, help="(sport=)")
        parser.add_argument("--dport", type=int, default=DPORT, help="allowed flows' port (dport=)")
        parser.add_argument("--deny-dport", type=int, default=DENY_DPORT,
                            help="denied flows' port (deny-dport=)")
        parser.add_argument("--stats", action="store_true",
                            help="TRex flow stats per stream (allowed: pg_id 1-3, denied: 11-13)")
        argv = list(tunables or [])
        # Older TRex passes `-t key=value,...` as keyword arguments instead of a list.
        for key, value in kwargs.items():
            if key in ("direction", "port_id"):
                continue
            flag = "--" + key.replace("_", "-")
            if key in ("ipv6", "stats"):
                if str(value).lower() in ("1", "true", "yes", "on"):
                    argv.append(flag)
            else:
                argv += [flag, str(value)]
        args = parser.parse_args(argv)
        if args.flows < 1:
            parser.error("--flows must be at least 1")
        if not 0 <= args.allowed <= 100:
            parser.error("--allowed is a percentage, 0..100")
        if args.src_count < 1:
            parser.error("--src-count must be at least 1")
        if not 0 <= args.sport_first <= args.sport_last <= 65535:
            parser.error("--sport-first..--sport-last is not a port range")
        allowed, denied = class_counts(args.flows, args.allowed)
        if allowed and denied and args.dport == args.deny_dport:
            parser.error("--dport and --deny-dport must differ when both classes are present")
        space = args.src_count * (args.sport_last - args.sport_first + 1)
        if max(allowed, denied) > space:
            parser.error("%d flows in one class but the source addresses and ports give only %d"
                         % (max(allowed, denied), space))
        if args.size.lower() == "imix":
            args.sizes = imix_mix()
        else:
            size = int(args.size)
            if not 64 <= size <= 9000:
                parser.error("--size is 64..9000 (FCS included) or imix")
            args.sizes = [(size, 1.0)]
        return args

    @staticmethod
    def base_packet(args, dport):
        if args.ipv6:
            l3 = IPv6(src=args.src or SRC_IP6, dst=args.dst or DST_IP6, hlim=64)
        else:
            l3 = IP(src=args.src or SRC_IP, dst=args.dst or DST_IP, ttl=64, flags="DF")
        if args.proto == "tcp":
            # An established connection's segment, as palisade-pktgen sends (ACK|PSH).
            l4 = TCP(sport=args.sport_first, dport=dport, flags="PA", seq=1, ack=1, window=65535)
        else:
            l4 = UDP(sport=args.sport_first, dport=dport)
        return Ether() / l3 / l4

    @staticmethod
    def field_engine(args, flows):
        src = ipaddress.ip_address(args.src or (SRC_IP6 if args.ipv6 else SRC_IP))
        if args.ipv6:
            low = int(src) & 0xFFFFFFFF
            if low + args.src_count - 1 > 0xFFFFFFFF:
                raise ValueError("the IPv6 source range crosses a /96")
            ip_min, ip_max, ip_field, fixup = low, low + args.src_count - 1, "IPv6.src", 12
            l3 = "IPv6"
        else:
            ip_min = int(src)
            ip_max = ip_min + args.src_count - 1
            ip_field, fixup, l3 = "IP.src", 0, "IP"
        l4 = "TCP" if args.proto == "tcp" else "UDP"
        l4_type = CTRexVmInsFixHwCs.L4_TYPE_TCP if l4 == "TCP" else CTRexVmInsFixHwCs.L4_TYPE_UDP
        return STLScVmRaw([
            STLVmTupleGen(name="flow", ip_min=ip_min, ip_max=ip_max,
                          port_min=args.sport_first, port_max=args.sport_last,
                          limit_flows=flows),
            STLVmWrFlowVar(fv_name="flow.ip", pkt_offset=ip_field, offset_fixup=fixup),
            STLVmWrFlowVar(fv_name="flow.port", pkt_offset=l4 + ".sport"),
            STLVmFixChecksumHw(l3_offset=l3, l4_offset=l4, l4_type=l4_type),
        ])

    def streams(self, args):
        allowed, denied = class_counts(args.flows, args.allowed)
        out = []
        for flows, dport, pg_base, name in ((allowed, args.dport, 1, "allowed"),
                                             (denied, args.deny_dport, 11, "denied")):
            if flows == 0:
                continue
            for i, (size, share) in enumerate(args.sizes):
                pkt = self.base_packet(args, dport)
                if len(pkt) > size - FCS_LEN:
                    raise ValueError("a %d-byte frame cannot hold the %d bytes of headers"
                                     % (size, len(pkt) + FCS_LEN))
                pad = size - FCS_LEN - len(pkt)
                stream_kw = {}
                if args.stats:
                    stream_kw["flow_stats"] = STLFlowStats(pg_id=pg_base + i)
                out.append(STLStream(
                    name="%s-%d" % (name, size),
                    packet=STLPktBuilder(pkt=pkt / (b"\x00" * pad),
                                         vm=self.field_engine(args, flows)),
                    # Relative rates: one packet per flow per round, split by size; scale
                    # the total with `-m`.
                    mode=STLTXCont(pps=flows * share),
                    **stream_kw))
        return out

    def get_streams(self, direction=0, tunables=(), **kwargs):
        return self.streams(self.parse(tunables, kwargs))


def register():
    return PalisadeFlows()
