"""The edge cases of the safetensors format, one per rule of the reference reader (the
`safetensors` crate's SafeTensors::deserialize: the 8-byte length and its limits, serde_json's
grammar and recursion limit, the typed header with its `__metadata__`, the entries' fields, the
checked sizes, the tiling of the data buffer) and one per case found where umload and the
reference disagreed. Each case is built from parts so that it can also be placed inside a valid
GPT-OSS checkpoint: its header members go first, verbatim, with its data at the start of the
buffer, and the checkpoint's own tensors follow, moved up.

`stricter` marks the few files umload refuses on purpose although the reference reads them; no
writer produces them (docs/security.md).
"""
import struct

U64_MAX = 2**64 - 1


class Case:
    def __init__(self, name, members, data=b"", prefix="", suffix=b"", edit=None, stricter=False):
        self.name = name
        self.members = members  # raw JSON text of the header's members, kept verbatim
        self.data = data
        self.prefix = prefix  # text before '{'
        self.suffix = suffix  # bytes after '}'
        self.edit = edit  # a change to the whole file's bytes, made last
        self.stricter = stricter

    def header(self, more_members=()):
        body = ",".join(list(self.members) + list(more_members))
        return self.prefix.encode("utf-8", "surrogateescape") + b"{" + body.encode("utf-8", "surrogateescape") + b"}" + self.suffix

    def file(self, more_members=(), more_data=b""):
        header = self.header(more_members)
        blob = struct.pack("<Q", len(header)) + header + self.data + more_data
        return self.edit(blob) if self.edit else blob


def entry(name, dtype, shape, begin, end, extra=""):
    shape_text = ",".join(str(d) for d in shape) if isinstance(shape, (list, tuple)) else shape
    return (f'"{name}":{{"dtype":{dtype if dtype.startswith(("{", "[")) else chr(34) + dtype + chr(34)},'
            f'"shape":[{shape_text}],"data_offsets":[{begin},{end}]{extra}}}')


A = entry("a", "U8", [4], 0, 4)
D4 = b"\x01\x02\x03\x04"


def nested(levels, inner="1"):
    return '{"y":' * levels + inner + "}" * levels


def with_length(value):
    return lambda blob: struct.pack("<Q", value) + blob[8:]


DTYPES = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
          "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
          "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def every_dtype():
    members, offset = [], 0
    for i, (name, bits) in enumerate(sorted(DTYPES.items())):
        n = 8  # elements: whole bytes for every width
        size = n * bits // 8
        members.append(entry(f"t{i}_{name}", name, [2, 4], offset, offset + size))
        offset += size
    return Case("every_dtype", members, bytes(i % 251 for i in range(offset)))


def cases():
    c = []
    add = lambda *a, **k: c.append(Case(*a, **k))

    # The 8-byte length and the limits around it.
    add("empty_file", [], edit=lambda blob: b"")
    add("seven_bytes", [], edit=lambda blob: blob[:7])
    add("length_only", [], edit=lambda blob: struct.pack("<Q", 0))
    add("length_over_limit", [A], D4, edit=with_length(100_000_001))
    add("length_u64_max", [A], D4, edit=with_length(U64_MAX))
    add("length_past_eof", [A], D4, edit=lambda blob: struct.pack("<Q", len(blob)) + blob[8:])
    add("length_short_by_one", [A], D4, edit=lambda blob: struct.pack("<Q", struct.unpack("<Q", blob[:8])[0] - 1) + blob[8:])
    add("empty_object", [])
    add("empty_object_with_data", [], b"xx")

    # Bytes around the JSON value: the four JSON whitespace bytes, nothing else, and no NUL.
    for label, ws in (("space", " "), ("newline", "\n"), ("tab", "\t"), ("cr", "\r")):
        add(f"{label}_before", [A], D4, prefix=ws * 3)
        add(f"{label}_after", [A], D4, suffix=ws.encode() * 5)
    add("all_whitespace_around", [A], D4, prefix=" \t\r\n", suffix=b"\n\r\t ")
    add("form_feed_before", [A], D4, prefix="\f")
    add("form_feed_after", [A], D4, suffix=b"\f")
    add("vertical_tab_after", [A], D4, suffix=b"\v")
    add("nbsp_after", [A], D4, suffix="\u00a0".encode())
    add("text_after", [A], D4, suffix=b"x")
    add("second_object_after", [A], D4, suffix=b"{}")
    add("byte_order_mark", [A], D4, prefix="\ufeff")
    add("nul_after", [A], D4, suffix=b"\0")
    add("nul_padding", [A], D4, suffix=b"\0" * 11)
    add("space_then_nul", [A], D4, suffix=b"  \0")
    add("nul_then_second_header", [A], D4, suffix=b"\0" + b'{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
    add("nul_then_bad_utf8", [A], D4, suffix=b"\0\xff\xfe")
    add("nul_before", [A], D4, prefix="\0")
    add("bad_utf8_after", [A], D4, suffix=b" \xff")

    # The header must be a JSON object: serde_json's grammar, strictly.
    for label, text in (("array", b"[]"), ("null", b"null"), ("string", b'"a"'), ("number", b"1"),
                        ("array_of_entry", b'[{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}]'),
                        ("truncated", b'{"a":{"dtype":'), ("whitespace_only", b"   "),
                        ("comment", b'{/*x*/"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'),
                        ("trailing_comma", b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},}'),
                        ("single_quotes", b"{'a':{}}"), ("bare_key", b"{a:{}}")):
        add(f"header_{label}", [], D4, edit=lambda blob, t=text: struct.pack("<Q", len(t)) + t + D4)
    add("top_level_scalar_member", ['"x":1', A], D4)
    add("bad_utf8_in_name", [A.replace('"a"', '"a\udcff"')], D4)
    add("overlong_utf8_in_name", [A.replace('"a"', '"a\udcc0\udcaf"')], D4)
    add("utf8_surrogate_in_name", [A.replace('"a"', '"a\udced\udca0\udc80"')], D4)
    add("utf8_past_u10ffff_in_name", [A.replace('"a"', '"a\udcf4\udc90\udc80\udc80"')], D4)
    add("raw_control_in_name", [A.replace('"a"', '"a\x01"')], D4)
    add("raw_tab_in_name", [A.replace('"a"', '"a\t"')], D4)
    add("raw_del_in_name", [A.replace('"a"', '"a\x7f"')], D4)
    add("escaped_nul_in_name", [A.replace('"a"', '"a\\u0000"')], D4)
    add("surrogate_pair_in_name", [A.replace('"a"', '"a\\ud83d\\ude00"')], D4)
    add("lone_high_surrogate_in_name", [A.replace('"a"', '"a\\ud800"')], D4)
    add("lone_low_surrogate_in_name", [A.replace('"a"', '"a\\udc00"')], D4)
    add("bad_escape_in_name", [A.replace('"a"', '"a\\x41"')], D4)
    add("utf8_name", [A.replace('"a"', '"poids.\u00e9\u4e2d"')], D4)
    add("escaped_field_name", ['"a":{"dty\\u0070e":"U8","shape":[4],"data_offsets":[0,4]}'], D4)
    add("escaped_field_name_twice", ['"a":{"dtype":"U8","dty\\u0070e":"U8","shape":[4],"data_offsets":[0,4]}'], D4)

    # Nesting: serde_json stops at 128 levels, also inside fields the reader ignores (the header's
    # object and the entry's count: 125 more levels are read, 126 are not).
    for levels in (125, 126, 200):
        add(f"ignored_objects_{levels}_deep", [entry("a", "U8", [4], 0, 4, ',"x":' + nested(levels))], D4)
        add(f"ignored_arrays_{levels}_deep", [entry("a", "U8", [4], 0, 4, ',"x":' + "[" * levels + "]" * levels)], D4)
    add("ignored_deep_elsewhere_in_array", [entry("a", "U8", [4], 0, 4, ',"x":[1,' + "[" * 125 + "]" * 125 + "]")], D4)

    # Numbers in ignored fields: serde_json refuses a double that overflows, reads the rest.
    for label, number in (("minus_zero", "-0"), ("u64_max", str(U64_MAX)), ("above_u64", str(2**64)),
                          ("below_i64", str(-2**63 - 1)), ("huge_float", "1e308"), ("overflow", "1e400"),
                          ("overflow_long", "1" + "0" * 400), ("underflow", "1e-400"), ("float", "-1.5e-3"),
                          ("leading_zero", "01"), ("bare_minus", "-"), ("plus", "+1"), ("dot", ".5"),
                          ("nan", "NaN"), ("infinity", "Infinity")):
        add(f"ignored_number_{label}", [entry("a", "U8", [4], 0, 4, ',"x":' + number)], D4)

    # __metadata__: null or an object of strings; at most once.
    add("metadata_object", ['"__metadata__":{"format":"pt","k":""}', A], D4)
    add("metadata_empty", ['"__metadata__":{}', A], D4)
    add("metadata_null", ['"__metadata__":null', A], D4)
    add("metadata_last", [A, '"__metadata__":{"format":"pt"}'], D4)
    add("metadata_only", ['"__metadata__":{"format":"pt"}'])
    add("metadata_key_twice", ['"__metadata__":{"k":"1","k":"2"}', A], D4)
    add("metadata_twice", ['"__metadata__":{"a":"b"}', '"__metadata__":{"c":"d"}', A], D4)
    add("metadata_null_twice", ['"__metadata__":null', '"__metadata__":null', A], D4)
    add("metadata_escaped_name", ['"__metadata\\u005f_":{"k":"v"}', A], D4)
    for label, value in (("array", "[]"), ("string", '"pt"'), ("number", "1"), ("true", "true"),
                         ("value_number", '{"k":1}'), ("value_null", '{"k":null}'), ("value_object", '{"k":{}}'),
                         ("value_array", '{"k":["v"]}'), ("tensor_entry", '{"dtype":"U8","shape":[4],"data_offsets":[0,4]}')):
        add(f"metadata_{label}", ['"__metadata__":' + value, A], D4)
    add("metadata_near_name", [entry("__metadata__ ", "U8", [4], 0, 4)], D4)

    # Entries: dtype, shape and data_offsets, each once; other fields ignored.
    c.append(every_dtype())
    add("fnuz_dtypes", [entry("e4", "F8_E4M3FNUZ", [2, 2], 0, 4), entry("e5", "F8_E5M2FNUZ", [3], 4, 7)], bytes(range(7)))
    add("f4_odd_count", [entry("a", "F4", [3], 0, 2)], b"\0\0")
    add("f4_even_count", [entry("a", "F4", [2, 3], 0, 3)], b"\0\0\0")
    add("f6_one_element", [entry("a", "F6_E2M3", [1], 0, 1)], b"\0")
    add("f6_four_elements", [entry("a", "F6_E3M2", [4], 0, 3)], b"\0\0\0")
    for label, dtype in (("unknown", "Q4"), ("lowercase", "u8"), ("f8_e4m3fn", "F8_E4M3FN"), ("empty", "")):
        add(f"dtype_{label}", [entry("a", dtype, [4], 0, 4)], D4)
    for label, dtype in (("number", "1"), ("null", "null"), ("array", '["U8"]'), ("object_array", '{"U8":[]}'),
                         ("object_object", '{"U8":{}}'), ("object_two_keys", '{"U8":null,"I8":null}')):
        add(f"dtype_{label}", [f'"a":{{"dtype":{dtype},"shape":[4],"data_offsets":[0,4]}}'], D4)
    add("dtype_object_null", ['"a":{"dtype":{"U8":null},"shape":[4],"data_offsets":[0,4]}'], D4, stricter=True)
    add("missing_dtype", ['"a":{"shape":[4],"data_offsets":[0,4]}'], D4)
    add("missing_shape", ['"a":{"dtype":"U8","data_offsets":[0,4]}'], D4)
    add("missing_offsets", ['"a":{"dtype":"U8","shape":[4]}'], D4)
    add("dtype_twice", ['"a":{"dtype":"F16","dtype":"BF16","shape":[2],"data_offsets":[0,4]}'], D4)
    add("dtype_twice_same", ['"a":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}'], D4)
    add("shape_twice", ['"a":{"dtype":"U8","shape":[4],"shape":[2,2],"data_offsets":[0,4]}'], D4)
    add("offsets_twice", ['"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"data_offsets":[0,4]}'], D4)
    add("unknown_field", [entry("a", "U8", [4], 0, 4, ',"x":1')], D4)
    add("unknown_field_first", ['"a":{"x":"y","dtype":"U8","shape":[4],"data_offsets":[0,4]}'], D4)
    add("unknown_field_twice", [entry("a", "U8", [4], 0, 4, ',"x":1,"x":[2]')], D4)
    add("unknown_field_nested", [entry("a", "U8", [4], 0, 4, ',"x":{"dtype":"Q4","shape":[-1],"data_offsets":{}}')], D4)
    add("unknown_field_named_like_metadata", [entry("a", "U8", [4], 0, 4, ',"__metadata__":7')], D4)
    add("entry_array", ['"a":["U8",[4],[0,4]]'], D4, stricter=True)
    add("entry_array_short", ['"a":["U8",[4]]'], D4)
    for label, value in (("null", "null"), ("string", '"U8"'), ("number", "4"), ("empty_object", "{}")):
        add(f"entry_{label}", ['"a":' + value], D4)
    add("empty_name", [entry("", "U8", [4], 0, 4)], D4, stricter=True)
    add("duplicate_name_identical", [A, A], D4, stricter=True)
    add("duplicate_name_differing", [A, entry("a", "U8", [8], 0, 8)], D4 * 2, stricter=True)
    add("duplicate_name_bad_first", [entry("a", "U8", [5], 0, 4), A], D4, stricter=True)

    # Shapes: arrays of non-negative integers within 64 bits, any rank.
    add("scalar", [entry("a", "U8", [], 0, 1)], b"\x07")
    add("rank_9", [entry("a", "U8", [1] * 8 + [4], 0, 4)], D4)
    add("rank_300", [entry("a", "U8", [1] * 299 + [4], 0, 4)], D4)
    add("dims_with_zero", [entry("a", "F32", [3, 0, 5], 0, 0)])
    for label, shape in (("negative", "-4"), ("minus_zero", "-0"), ("float", "4.5"), ("float_integral", "4.0"),
                         ("exponent", "4e0"), ("above_u64", str(2**64)), ("string", '"4"'), ("null", "null"),
                         ("nested", "[4]"), ("true", "true")):
        add(f"shape_{label}", [entry("a", "U8", shape, 0, 4)], D4)
    add("shape_object", ['"a":{"dtype":"U8","shape":{"0":4},"data_offsets":[0,4]}'], D4)
    add("shape_a_string", ['"a":{"dtype":"U8","shape":"4","data_offsets":[0,4]}'], D4)

    # data_offsets: exactly two non-negative integers, begin <= end.
    for label, offsets in (("one", "[4]"), ("three", "[0,4,4]"), ("empty", "[]"), ("negative", "[-1,3]"),
                           ("minus_zero_begin", "[-0,4]"), ("minus_zero_end", "[0,-0]"), ("float", "[0,4.0]"),
                           ("string", '["0","4"]'), ("null", "null"), ("object", '{"begin":0,"end":4}'),
                           ("nested", "[[0],4]"), ("above_u64", f"[0,{2**64}]")):
        add(f"offsets_{label}", [f'"a":{{"dtype":"U8","shape":[4],"data_offsets":{offsets}}}'], D4)
    add("end_before_begin", [entry("a", "U8", [0], 4, 0)], D4)

    # Sizes: product(shape) x bits / 8 == end - begin, each product checked in 64 bits, in order.
    add("size_mismatch", [entry("a", "BF16", [4], 0, 4)], D4)
    add("zero_size_tensors", [entry("z", "BF16", [0, 3], 0, 0), A, entry("y", "F64", [2, 0], 4, 4)], D4)
    add("zero_size_same_offset", [entry("z", "U8", [0], 0, 0), entry("y", "I8", [0], 0, 0), A], D4)
    add("wrap_u8_2x2p63_over_16", [entry("a", "U8", [2, 2**63 + 8], 0, 16)], b"\0" * 16)
    add("wrap_u8_2p32x2p32_over_0", [entry("a", "U8", [2**32, 2**32], 0, 0)])
    add("wrap_f4_2p33x2p32_over_0", [entry("a", "F4", [2**33, 2**32], 0, 0)])
    add("wrap_f32_three_2p32", [entry("a", "F32", [2**32, 2**32, 2**32], 0, 4)], D4)
    add("elements_u64_max_bits_overflow", [entry("a", "U8", [U64_MAX], 0, 0)])
    add("bits_overflow_u8_2p61", [entry("a", "U8", [2**61], 0, 0)])
    add("bits_overflow_f4_2p62", [entry("a", "F4", [2**62], 0, 0)])
    add("largest_bits_u8_2p61_minus_1", [entry("a", "U8", [2**61 - 1], 0, 2**61 - 1)])
    add("zero_before_huge_dims", [entry("a", "U8", [0, 2**32, 2**32], 0, 0)])
    add("zero_after_overflow", [entry("a", "U8", [2**32, 2**32, 0], 0, 0)])
    add("zero_after_u64_max", [entry("a", "U8", [U64_MAX, 0], 0, 0)])
    add("zero_after_u64_max_f4", [entry("a", "F4", [U64_MAX, 0], 0, 0)])

    # The data buffer is tiled exactly, from 0 to the end of the file, in any order of entries.
    add("entries_out_of_order", [entry("b", "U8", [2], 4, 6), A], D4 + b"\x05\x06")
    add("gap", [A, entry("b", "U8", [4], 8, 12)], D4 * 3)
    add("gap_at_start", [entry("a", "U8", [4], 4, 8)], D4 * 2)
    add("overlap", [A, entry("b", "U8", [4], 2, 6)], D4 + b"\0\0")
    add("trailing_bytes", [A], D4 + b"\0")
    add("data_past_eof", [entry("a", "U8", [16], 0, 16)], D4 * 2)
    add("offsets_past_u64_sum", [A, entry("b", "U8", [0], U64_MAX, U64_MAX)], D4)
    return c
