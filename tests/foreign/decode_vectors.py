#!/usr/bin/env python3
"""A second implementation of the wire protocol, written from docs/protocol.md alone, in
Python with the standard library only: it decodes every test vector of
docs/protocol-vectors.json and checks it against the vector's value. CI runs it, so the
document stays complete enough to write a client from."""

import hashlib
import json
import math
import pathlib
import struct
import sys

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"


class Bytes:
    """A little-endian reader (bincode 1.x layout)."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def un(self, fmt):
        (value,) = struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))
        return value

    def vec(self, read_one):
        return [read_one() for _ in range(self.un("Q"))]

    def blob(self):
        return list(self.take(self.un("Q")))

    def done(self):
        if self.at != len(self.data):
            raise ValueError(f"{len(self.data) - self.at} trailing bytes")


def string(r):
    return r.take(r.un("Q")).decode()


def match_config(r):
    return {
        "mode": string(r), "tick_hz": r.un("H"), "snapshot_hz": r.un("H"),
        "duration_s": r.un("I"), "max_players": r.un("H"), "max_rewind_ms": r.un("H"),
        "seed": r.un("Q"), "schema_hash": r.un("Q"), "mode_config": bytes(r.blob()).hex(),
    }


def f32(x):
    """x rounded to binary32, as the schema's arithmetic on its f32 values is."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def grid_steps(lo, hi, step):
    return max(1, math.ceil(f32(hi - lo) / step))


def field_kind(r):
    """A field's kind as (kind, bits, offset, top): how its slots are written, what to add
    to a slot to get the value (ints only) and the largest valid slot (per axis for a
    vector, per component for a rotation, the length for a text)."""
    tag = r.un("I")
    if tag in (0, 1):
        lo, hi, step = [r.un("f") for _ in range(3)], [r.un("f") for _ in range(3)], r.un("f")
        steps = [grid_steps(lo[a], hi[a], step) for a in range(3)]
        return ("vec3", [s.bit_length() for s in steps], 0, steps)
    if tag == 2:
        bits = r.un("B")
        return ("rotation", bits, 0, [(1 << bits) - 1] * 3)
    if tag == 3:
        lo, hi = r.un("i"), r.un("i")
        return ("scalar", (hi - lo).bit_length(), lo, max(0, hi - lo))
    if tag == 4:
        lo, hi, step = r.un("f"), r.un("f"), r.un("f")
        steps = grid_steps(lo, hi, step)
        return ("scalar", steps.bit_length(), 0, steps)
    if tag in (5, 6):
        names = r.vec(lambda: string(r))
        if tag == 5:
            top = max(0, len(names) - 1)
            return ("scalar", max(1, top.bit_length()), 0, top)
        return ("scalar", len(names), 0, (1 << len(names)) - 1)
    if tag == 7:
        return ("scalar", 1, 0, 1)
    if tag == 8:
        max_len = r.un("B")
        return ("text", max_len.bit_length(), 0, max_len)
    if tag == 9:
        return ("scalar", 32, 0, 0xFFFFFFFF)  # an entity id
    raise ValueError(f"field kind {tag}")


def fields(r):
    return r.vec(lambda: (string(r), *field_kind(r)))


def schema(data, expected_hash):
    """A mode's schema (a Welcome's): the components as (name, [(field, kind, bits,
    offset, top)]), the input's fields, the events and the requests (name, fields, [(list,
    fields, max_items)]), after checking it hashes as the match configuration says."""
    digest = hashlib.sha256(data).digest()
    if struct.unpack("<Q", digest[:8])[0] != expected_hash:
        raise ValueError("schema does not match the config's schema_hash")
    r = Bytes(data)
    if r.un("H") != 2:
        raise ValueError("schema format")
    mode = string(r)

    def component():
        name, fs = string(r), fields(r)
        r.un("I"), r.un("B")  # visibility, priority
        return (name, fs)

    components = r.vec(component)
    inputs = fields(r)
    events = r.vec(lambda: (string(r), fields(r)))

    def request():
        name, fs = string(r), fields(r)
        lists = r.vec(lambda: (string(r), fields(r), r.un("H")))
        return (name, fs, lists)

    requests = r.vec(request)
    r.done()
    return {"mode": mode, "components": components, "input": inputs, "events": events,
            "requests": requests}


def player_score(r):
    return {"player": r.un("Q"), "entity": r.un("I"), "score": r.un("I")}


REJECT_CODES = ["VersionMismatch", "MalformedHello", "BadSignature", "Expired", "WrongEdge",
                "TokenReused", "InvalidConfig", "EdgeFull", "MatchFull", "MatchOver", "Draining",
                "Timeout", "DatagramsUnsupported", "ConfigMismatch", "IssuedBeforeStart",
                "NotYetValid", "UnknownMode", "SchemaMismatch"]
END_REASONS = ["TimeUp", "ScoreLimit", "Abandoned", "Shutdown"]
GOODBYES = ["Quit", "MatchOver", "Shutdown", "ProtocolViolation", "TooSlow", "Replaced"]
REFUSAL_CODES = ["Malformed", "Busy", "OverLimit", "Invalid", "Unsupported"]


def control(r):
    tag = r.un("I")
    if tag == 0:
        hello = {"protocol_version": r.un("H"), "connect_token": {
            "body": r.blob(), "signature": r.blob(), "seat": r.un("H"),
            "secret": list(r.take(16))}}
        hello["reconnect_key"] = list(r.take(16)) if r.un("B") == 1 else None
        return {"Hello": hello}
    if tag == 1:
        welcome = {
            "protocol_version": r.un("H"), "match_id": r.un("Q"), "player_id": r.un("Q"),
            "entity": r.un("I"), "tick": r.un("I"), "config": match_config(r),
            "schema": r.blob()}
        welcome["reconnect_key"] = list(r.take(16))
        welcome["players"] = r.vec(lambda: player_score(r))
        return {"Welcome": welcome}
    if tag == 2:
        return {"Reject": {"code": REJECT_CODES[r.un("I")], "detail": r.blob()}}
    if tag == 3:
        tick, kind = r.un("I"), r.un("I")
        if kind == 0:
            event = {"PlayerJoined": {"player": r.un("Q"), "entity": r.un("I")}}
        elif kind == 1:
            event = {"PlayerLeft": {"player": r.un("Q")}}
        elif kind == 2:
            event = {"Mode": {"kind": r.un("H"), "fields": r.blob()}}
        else:
            event = {"MatchEnded": {"reason": END_REASONS[r.un("I")],
                                    "scores": r.vec(lambda: player_score(r))}}
        return {"Event": {"tick": tick, "event": event}}
    if tag == 4:
        return {"Ping": {"client_time_us": r.un("Q")}}
    if tag == 5:
        return {"Pong": {"client_time_us": r.un("Q"), "server_tick": r.un("I")}}
    if tag == 6:
        return {"Goodbye": GOODBYES[r.un("I")]}
    if tag == 7:
        return {"Request": {"seq": r.un("I"), "kind": r.un("H"), "body": r.blob()}}
    if tag == 8:
        seq = r.un("I")
        refused = None
        if r.un("B") == 1:
            refused = {"code": REFUSAL_CODES[r.un("I")], "detail": r.blob()}
        return {"Answer": {"seq": seq, "refused": refused}}
    raise ValueError(f"control tag {tag}")


def datagram(r):
    """Bincode's layout but for a one-byte tag and two-byte lengths (§4)."""
    tag = r.un("B")
    short_blob = lambda: list(r.take(r.un("H")))  # noqa: E731
    if tag == 0:
        return {"Input": {"ack_snapshot_tick": r.un("I"), "inputs": short_blob()}}
    if tag != 1:
        raise ValueError(f"datagram tag {tag}")
    return {"Snapshot": {"tick": r.un("I"), "baseline_tick": r.un("I"),
                         "reference_gap": r.un("B"),
                         "ack_input_seq": r.un("I"), "ticks_left": r.un("I"),
                         "body": short_blob()}}


class Bits:
    """Most significant bit first."""

    def __init__(self, data):
        self.bits = "".join(format(b, "08b") for b in data)
        self.at = 0

    def get(self, n):
        if self.at + n > len(self.bits):
            raise ValueError("truncated body")
        value = int(self.bits[self.at:self.at + n], 2) if n else 0
        self.at += n
        return value


def count(b):
    if b.get(1) == 0:
        return b.get(4)
    if b.get(1) == 0:
        return b.get(8) + 16
    return b.get(16)


def gap(b):
    if b.get(1):
        return 1
    if b.get(1):
        return b.get(3) + 2
    if b.get(1):
        return b.get(6) + 10
    return b.get(32)


def whole(b, kind, bits):
    if kind == "vec3":
        return [b.get(axis) for axis in bits]
    if kind == "rotation":
        return [b.get(2)] + [b.get(bits) for _ in range(3)]
    if kind == "text":
        return bytes(b.get(8) for _ in range(b.get(bits))).decode()
    return b.get(bits)


class Range:
    """The range decoder of §6: LZMA's, reading past the end as zeros."""

    def __init__(self, data):
        self.data, self.at = data, 0
        self.range, self.code = 0xFFFFFFFF, 0
        for _ in range(4):
            self.code = (self.code << 8) | self.byte()

    def byte(self):
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value

    def normalize(self):
        while self.range < 1 << 24:
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | self.byte()) & 0xFFFFFFFF

    def bit(self, probs, key):
        """A decision against the probability named `key` (every one starts at 1024)."""
        p = probs.get(key, 1024)
        bound = (self.range >> 11) * p
        if self.code < bound:
            self.range, probs[key], bit = bound, p + ((2048 - p) >> 4), 0
        else:
            self.code, self.range = self.code - bound, self.range - bound
            probs[key], bit = p - (p >> 4), 1
        self.normalize()
        return bit

    def direct(self, n):
        value = 0
        for _ in range(n):
            self.range >>= 1
            bit = int(self.code >= self.range)
            if bit:
                self.code -= self.range
            value = (value << 1) | bit
            self.normalize()
        return value

    def finish(self):
        if self.at > len(self.data) + 4:
            raise ValueError("truncated body")


def number(rc, probs, key, with_sign):
    """A number (§6): its value and its magnitude's bit length."""
    if not rc.bit(probs, key + ("nonzero",)):
        return 0, 0
    negative = with_sign and rc.bit(probs, key + ("sign",))
    length = 1
    while length < 33 and rc.bit(probs, key + ("length", length)):
        length += 1
    m = 1
    for rank in range(length - 1):
        bit = rc.bit(probs, key + ("mantissa", length, rank)) if rank < 2 else rc.direct(1)
        m = (m << 1) | bit
    return (-m if negative else m), length


def bucket(bits):
    return 0 if bits == 0 else 1 if bits <= 3 else 2 if bits <= 7 else 3


def axes(rc, probs, key, base, tops):
    out, longest = [], 0
    for a, (b, top) in enumerate(zip(base, tops)):
        d, length = number(rc, probs, key + (a, bucket(longest)), True)
        longest = max(longest, length)
        if not 0 <= b + d <= top:
            raise ValueError("value out of range")
        out.append(b + d)
    return out


def direct_whole(rc, kind, bits, top):
    if kind == "vec3":
        out = [rc.direct(n) for n in bits]
        if any(v > t for v, t in zip(out, top)):
            raise ValueError("value out of range")
        return out
    if kind == "rotation":
        return [rc.direct(2)] + [rc.direct(bits) for _ in range(3)]
    if kind == "text":
        n = rc.direct(bits)
        if n > top:
            raise ValueError("text too long")
        return bytes(rc.direct(8) for _ in range(n)).decode()
    value = rc.direct(bits)
    if value > top:
        raise ValueError("value out of range")
    return value


PROB_SIZES = {"vec3": 2 * 3 * 4 * 101, "rotation": 1 + 3 * 4 * 101, "scalar": 101, "text": 0}


def field_keys(schema):
    """Whose probabilities each field's deltas and whole values use: its own while the
    fields' own ones total at most 32,768, in schema order; past that, its kind's shared
    ones."""
    keys, own = {}, 0
    for ci, (_, fields) in enumerate(schema):
        for fi, (_, kind, *_rest) in enumerate(fields):
            if own + PROB_SIZES[kind] <= 32768:
                own += PROB_SIZES[kind]
                keys[ci, fi] = ("field", ci, fi)
            else:
                keys[ci, fi] = ("shared", kind)
    return keys


def delta(rc, probs, key, kind, bits, top, base):
    key += ("delta",)
    if kind == "vec3":
        return axes(rc, probs, key, base, top)
    if kind == "rotation":
        if rc.bit(probs, key + ("largest",)):
            return direct_whole(rc, kind, bits, top)
        return [base[0]] + axes(rc, probs, key, base[1:], top)
    if kind == "scalar":
        return axes(rc, probs, key, [base], [top])[0]
    return direct_whole(rc, kind, bits, top)


def extrapolate(b, r, ahead, behind, top):
    """b carried on by its motion since r, rounded half up, clamped to 0..top."""
    return min(max(b + (2 * (b - r) * ahead + behind) // (2 * behind), 0), top)


def predicted(entity, older, schema, ahead, behind):
    """An entity's baseline with its vectors, and its rotations whose largest component
    is the same in the reference, extrapolated from the reference (§6, References)."""
    out = {c: dict(f) for c, f in entity.items()}
    if older is None or set(older) != set(entity):
        return out
    for name, fields in schema:
        for f, kind, bits, _, top in fields:
            if name not in entity:
                continue
            b, r = entity[name][f], older[name][f]
            if kind == "vec3":
                out[name][f] = [extrapolate(x, y, ahead, behind, t) for x, y, t in zip(b, r, top)]
            elif kind == "rotation" and b[0] == r[0]:
                out[name][f] = [b[0]] + [extrapolate(x, y, ahead, behind, (1 << bits) - 1)
                                         for x, y in zip(b[1:], r[1:])]
    return out


def generic_body(data, baseline, schema, reference=None, ahead=1, behind=1):
    """Decodes a body into {id: {component: {field: value}}} against such a baseline and,
    if given, a reference view `behind` ticks before it, the body `ahead` ticks after."""
    rc, probs, keys = Range(data), {}, field_keys(schema)
    new_ids, at = [], 0
    for _ in range(number(rc, probs, ("new_count",), False)[0]):
        at += number(rc, probs, ("new_gap",), False)[0] + 1
        new_ids.append(at)
    walk = sorted([(i, 0) for i in baseline] + [(i, 1) for i in new_ids])
    view, touched, previous_new = {}, 0, None
    for id_, is_new in walk:
        if not is_new:
            touched = rc.bit(probs, ("touched", touched))
            if touched and rc.bit(probs, ("removed",)):
                continue
            if id_ in new_ids:
                raise ValueError("a new id the baseline holds, not removed")
            entity = {c: dict(f) for c, f in baseline[id_].items()}
            view[id_] = entity
            if not touched:
                continue
            older = None if reference is None else reference.get(id_)
            guess = predicted(entity, older, schema, ahead, behind)
            for ci, (name, fields) in enumerate(schema):
                if name not in entity or not fields or not rc.bit(probs, ("changed", ci)):
                    continue
                for fi, (f, kind, bits, _, top) in enumerate(fields):
                    if len(fields) > 1 and not rc.bit(probs, ("flag", ci, fi)):
                        continue
                    entity[name][f] = delta(rc, probs, keys[ci, fi], kind, bits, top,
                                            guess[name][f])
            continue
        if previous_new and rc.bit(probs, ("same_mask",)):
            mask = previous_new[0]
        else:
            mask = [name for ci, (name, _) in enumerate(schema) if rc.bit(probs, ("mask", ci))]
        before = previous_new[1] if previous_new and previous_new[0] == mask else None
        entity = {}
        for ci, (name, fields) in enumerate(schema):
            if name not in mask:
                continue
            entity[name] = {}
            for fi, (f, kind, bits, _, top) in enumerate(fields):
                if kind == "vec3" and before is not None:
                    key = keys[ci, fi] + ("whole",)
                    entity[name][f] = axes(rc, probs, key, before[name][f], top)
                else:
                    entity[name][f] = direct_whole(rc, kind, bits, top)
        view[id_] = entity
        previous_new = (mask, entity)
    rc.finish()
    return view


def to_arena(view):
    """The vectors' arena form of a generic view."""
    out = []
    for id_ in sorted(view):
        e = view[id_]
        rot = e["rotation"]["rotation"]
        motion = e.get("motion")
        out.append({
            "id": id_, "kind": "Player" if "character" in e else "Prop",
            "position": e["position"]["position"],
            "rotation": {"largest": rot[0], "components": rot[1:]},
            "motion": None if motion is None else {
                "velocity": motion["velocity"], "grounded": bool(motion["grounded"])},
        })
    return out


def from_arena(entities):
    view = {}
    for e in entities:
        v = {"character" if e["kind"] == "Player" else "prop": {},
             "position": {"position": e["position"]},
             "rotation": {"rotation": [e["rotation"]["largest"]] + e["rotation"]["components"]}}
        if e["motion"] is not None:
            v["motion"] = {"velocity": e["motion"]["velocity"],
                           "grounded": int(e["motion"]["grounded"])}
        view[e["id"]] = v
    return view


def mode_event(event, schema):
    """A mode event's name and fields, by the schema's events."""
    name, layout = schema["events"][event["kind"]]
    b = Bits(bytes(event["fields"]))
    values = {f: whole(b, kind, bits) + offset for f, kind, bits, offset, _ in layout}
    if len(b.bits) - b.at >= 8 or any(bit != "0" for bit in b.bits[b.at:]):
        raise ValueError("bad padding")
    return name, values


def slot_values(b, layout):
    """A field list's values as their slots read: an integer's value, another one-slot
    field's slot, a multi-slot field's slots."""
    out = {}
    for f, kind, bits, offset, _ in layout:
        value = whole(b, kind, bits)
        out[f] = value + offset if isinstance(value, int) else value
    return out


def mode_request(request, schema):
    """A request's name, fields and lists, by the schema's requests."""
    name, layout, lists = schema["requests"][request["kind"]]
    b = Bits(bytes(request["body"]))
    values = slot_values(b, layout)
    items = {}
    for list_name, item_layout, max_items in lists:
        n = b.get(max_items.bit_length())
        if n > max_items:
            raise ValueError("list over its bound")
        items[list_name] = [slot_values(b, item_layout) for _ in range(n)]
    if len(b.bits) - b.at >= 8 or any(bit != "0" for bit in b.bits[b.at:]):
        raise ValueError("bad padding")
    return {"request": name, **values, "lists": items}


def input_fields(b, layout):
    return {name: b.get(bits) + offset for name, _, bits, offset, _ in layout}


def input_batch(data, layout):
    b = Bits(data)
    inputs = []
    for _ in range(b.get(3) + 1):
        if not inputs:
            seq, ticks, view_tick = b.get(32), b.get(3) + 1, b.get(32)
            fields = input_fields(b, layout)
        else:
            prev = inputs[-1]
            seq = prev["seq"] - gap(b)
            ticks = b.get(3) + 1
            back = b.get(1)
            moved = count(b)
            view_tick = prev["view_tick"] - moved if back else prev["view_tick"] + moved
            if b.get(1):
                fields = {name: prev[name] for name, *_ in layout}
            else:
                fields = input_fields(b, layout)
        inputs.append({"seq": seq, "ticks": ticks, "view_tick": view_tick, **fields})
    if len(b.bits) - b.at >= 8 or any(bit != "0" for bit in b.bits[b.at:]):
        raise ValueError("bad padding")
    return inputs


def main():
    vectors = json.loads(VECTORS.read_text())["vectors"]
    # Everything mode-specific comes from the schema the Welcome carries: nothing of the
    # arena is written into this decoder.
    (welcome,) = [v for v in vectors if v["name"] == "welcome"]
    w = control(Bytes(bytes.fromhex(welcome["hex"])[4:]))["Welcome"]
    mode = schema(bytes(w["schema"]), w["config"]["schema_hash"])
    # Requests are the AR room's: its schema is a vector of its own.
    (ar,) = [v for v in vectors if v["kind"] == "schema"]
    room = schema(bytes.fromhex(ar["hex"]), ar["hash"])
    for v in vectors:
        name, kind = v["name"], v["kind"]
        if kind == "schema":
            print(f"ok  {name}")
            continue
        if kind == "frame":
            data = bytes.fromhex(v["hex"])
            (length,) = struct.unpack("<I", data[:4])
            assert length == len(data) - 4, name
            r = Bytes(data[4:])
            got = control(r)
            r.done()
        elif kind == "datagram":
            r = Bytes(bytes.fromhex(v["hex"]))
            got = datagram(r)
            r.done()
        elif kind == "input_batch":
            got = input_batch(bytes.fromhex(v["hex"]), mode["input"])
        elif kind == "snapshot_body":
            reference = v.get("reference")
            got = to_arena(generic_body(bytes.fromhex(v["hex"]), from_arena(v["baseline"]),
                                        mode["components"],
                                        None if reference is None else from_arena(reference),
                                        v.get("ahead", 1), v.get("behind", 1)))
        elif kind == "token":
            secret = bytes.fromhex(v["secret"])
            commitment = hashlib.sha256(b"outpost-seat/v1\0" + secret).digest()[:16]
            assert commitment.hex() == v["commitment"], name
            # The grant, read by the layout of §5: its seats hold this commitment, and
            # each seat its player's team.
            g = Bytes(bytes.fromhex(v["grant_hex"]))
            match_id, edge_id, config = g.un("Q"), string(g), match_config(g)
            issued, expires = g.un("Q"), g.un("Q")
            seats = g.vec(lambda: {"player": g.un("Q"), "commitment": g.take(16).hex(),
                                   "team": g.un("B")})
            g.done()
            seat = seats[int(v["seat"])]
            assert seat["commitment"] == v["commitment"], name
            assert [x["team"] for x in seats] == [0, 1], f"{name}: teams {seats}"
            assert issued < expires and edge_id and config["mode"] == "arena", name
            print(f"ok  {name}")
            continue
        else:
            raise SystemExit(f"{name}: unknown kind {kind}")
        if kind == "frame" and "Request" in got:
            fields = mode_request(got["Request"], room)
            if fields != v["fields"]:
                raise SystemExit(f"{name}: fields {fields}, expected {v['fields']}")
        if kind == "frame" and "Event" in got and "Mode" in got["Event"]["event"]:
            name, values = mode_event(got["Event"]["event"]["Mode"], mode)
            if {"event": name, **values} != v["fields"]:
                raise SystemExit(f"{name}: fields {values}, expected {v['fields']}")
        if got != v["value"]:
            raise SystemExit(f"{name}: decoded {json.dumps(got)}\n  expected {json.dumps(v['value'])}")
        print(f"ok  {name}")
    print(f"all {len(vectors)} vectors decoded from the document's description")


if __name__ == "__main__":
    sys.exit(main())
