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
    """A field's kind as (kind, bits, offset): how its slots are written and what to add
    to a slot to get the value (ints only)."""
    tag = r.un("I")
    if tag in (0, 1):
        lo, hi, step = [r.un("f") for _ in range(3)], [r.un("f") for _ in range(3)], r.un("f")
        return ("vec3", [grid_steps(lo[a], hi[a], step).bit_length() for a in range(3)], 0)
    if tag == 2:
        return ("rotation", r.un("B"), 0)
    if tag == 3:
        lo, hi = r.un("i"), r.un("i")
        return ("scalar", (hi - lo).bit_length(), lo)
    if tag == 4:
        lo, hi, step = r.un("f"), r.un("f"), r.un("f")
        return ("scalar", grid_steps(lo, hi, step).bit_length(), 0)
    if tag in (5, 6):
        names = r.vec(lambda: string(r))
        bits = max(1, (len(names) - 1).bit_length()) if tag == 5 else len(names)
        return ("scalar", bits, 0)
    if tag == 7:
        return ("scalar", 1, 0)
    if tag == 8:
        return ("text", r.un("B").bit_length(), 0)
    if tag == 9:
        return ("scalar", 32, 0)  # an entity id
    raise ValueError(f"field kind {tag}")


def fields(r):
    return r.vec(lambda: (string(r), *field_kind(r)))


def schema(data, expected_hash):
    """A mode's schema (a Welcome's): the components as (name, [(field, kind, bits,
    offset)]), the input's fields, the events and the requests (name, fields, [(list,
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


def signed(value, bits):
    return value - (1 << bits) if value >> (bits - 1) else value


def whole(b, kind, bits):
    if kind == "vec3":
        return [b.get(axis) for axis in bits]
    if kind == "rotation":
        return [b.get(2)] + [b.get(bits) for _ in range(3)]
    if kind == "text":
        return bytes(b.get(8) for _ in range(b.get(bits))).decode()
    return b.get(bits)


def delta(b, kind, bits, base):
    if kind == "vec3":
        for width in (3, 6, 10, 14):
            if b.get(1) == 0:
                return [v + signed(b.get(width), width) for v in base]
        return whole(b, kind, bits)
    if kind == "rotation":
        if b.get(1):
            half = bits // 2
            return [base[0]] + [c + signed(b.get(half), half) for c in base[1:]]
        return whole(b, kind, bits)
    return whole(b, kind, bits)


def generic_body(data, baseline, schema):
    """Decodes a body into {id: {component: {field: value}}} against such a baseline."""
    b = Bits(data)
    view = {k: dict(v) for k, v in baseline.items()}
    at = 0
    for _ in range(count(b)):
        at += gap(b)
        del view[at]
    at, previous_mask = 0, None
    for _ in range(count(b)):
        at += gap(b)
        if b.get(1):
            if b.get(1):
                mask = previous_mask
            else:
                mask = [name for name, _ in schema if b.get(1)]
            previous_mask = mask
            entity = {}
            for name, fields in schema:
                if name in mask:
                    entity[name] = {f: whole(b, kind, bits) for f, kind, bits, _ in fields}
            view[at] = entity
            continue
        entity = {c: dict(f) for c, f in view[at].items()}
        for name, fields in schema:
            if name not in entity or not fields or not b.get(1):
                continue
            changed = [b.get(1) for _ in fields] if len(fields) > 1 else [1]
            for (f, kind, bits, _), flag in zip(fields, changed):
                if flag:
                    entity[name][f] = delta(b, kind, bits, entity[name][f])
        view[at] = entity
    if len(b.bits) - b.at >= 8 or any(bit != "0" for bit in b.bits[b.at:]):
        raise ValueError("bad padding")
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
    values = {f: whole(b, kind, bits) + offset for f, kind, bits, offset in layout}
    if len(b.bits) - b.at >= 8 or any(bit != "0" for bit in b.bits[b.at:]):
        raise ValueError("bad padding")
    return name, values


def slot_values(b, layout):
    """A field list's values as their slots read: an integer's value, another one-slot
    field's slot, a multi-slot field's slots."""
    out = {}
    for f, kind, bits, offset in layout:
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
    return {name: b.get(bits) + offset for name, _, bits, offset in layout}


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
            got = to_arena(generic_body(bytes.fromhex(v["hex"]), from_arena(v["baseline"]),
                                        mode["components"]))
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
