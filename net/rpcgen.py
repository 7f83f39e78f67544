#!/usr/bin/env python3
"""rpcgen: turn an RPC interface file (net/net.rpc, dsm/dsm.rpc, boot/boot.rpc)
into C.

Usage:
    rpcgen.py --name N INPUT.rpc OUT_rpc.h OUT_rpc.c
    rpcgen.py --self-test

The build runs it from a meson custom_target; the outputs live in the build
directory and are never committed. On any error it prints
"file:line: error: what" to stderr, writes nothing and exits with status 1,
so the build fails.

The interface language
----------------------
    # comment (to the end of the line)
    call ID NAME [inline] {
        req { FIELD; FIELD; ... }
        rep { FIELD; ... }
    }
    msg ID NAME [inline] { FIELD; ... }     # one-way, no reply
    record NAME { FIELD; ... }              # codecs only, no procedure

    FIELD := TYPE NAME          a scalar: u8 u16 u32 u64 i32 i64
           | bytes NAME<MAX>    variable bytes (u32 length + data), at most MAX
           | TYPE NAME<MAX>     variable array of scalars, at most MAX elements,
                                stored inline in the struct
           | bytes NAME[N]      fixed N bytes (uint8_t NAME[N])

ID is 1..1023 (DSM__RPC_MAX_PROC) and unique in the file; NAME is a C
identifier, unique in the file. `inline` runs the handler on the network
thread (DSM__RPC_F_INLINE), otherwise it runs on the worker pool. A req or
rep block may be empty. MAX is 1..2^31; an inline array may take at most
4096 bytes in its struct (MAX * element size), and a fixed bytes field 1..4096
bytes: use bytes<MAX> for anything big. Numbers are decimal or 0x hex.
Comment lines right above a call, msg or record are copied into the
generated header.

A record is a wire format that is not a procedure of its own: a message
of another protocol (the bootstrap's TCP exchange), or the element of a
batch packed into one bytes<MAX> field of a call (the release's diffs).
It has no ID and at least one field (so every encoded record takes at
least one byte, and a walk over a sequence always advances). A file may
hold records only: it then has no procedure table.

Rejected (file:line: what): syntax errors, unknown types, duplicate ids or
names, an id out of range, MAX out of range, oversized inline arrays, a
field name repeated in a block, a record without fields, and any two
generated C names that would collide (e.g. `DSM_RPC_A_B_C_MAX` from call
a_b field c and call a field b_c, or `struct dsm_rpc_a_req` from record
a_req and call a).

What it generates, for --name N and each call C (msg M)
---------------------------------------------------------
N_rpc.h:
    struct dsm_rpc_C_req, struct dsm_rpc_C_rep      (msg: struct dsm_rpc_M_msg)
        scalars as uintN_t/intN_t; bytes x<MAX> as struct dsm__bytes x;
        T x<MAX> as uint32_t x_len; T x[MAX]; bytes x[N] as uint8_t x[N];
        an empty struct gets uint8_t unused_.
    DSM_RPC_C_ID, DSM_RPC_C_<FIELD>_MAX (one per variable-length field name;
        a name used in both req and rep must have the same MAX there)
    size_t dsm_rpc_C_req_size(const struct dsm_rpc_C_req *m);
    int dsm_rpc_C_req_encode(const struct dsm_rpc_C_req *m, uint8_t *buf, size_t cap);
    int dsm_rpc_C_req_decode(struct dsm_rpc_C_req *m, const uint8_t *buf, size_t len);
        (and _rep_, or _msg_)
    extern const struct dsm__rpc_proc dsm_rpc_C_proc;
    extern const struct dsm__rpc_proc *const dsm_rpc_N_procs[DSM_RPC_N_NPROCS];
    static inline client stubs dsm_rpc_C(), dsm_rpc_C_async(), dsm_rpc_M_send();
    server side: dsm_rpc_C_handler, dsm_rpc_C_serve(), dsm_rpc_C_reply().
    (none of the procedure names when the file has records only)

and for each record R:
    struct dsm_rpc_R                                (members as above)
    DSM_RPC_R_<FIELD>_MAX       one per variable-length field
    DSM_RPC_R_SIZE_MIN          encoded size with every variable field empty
    DSM_RPC_R_SIZE_MAX          largest encoded size (every field at its MAX);
                                an unsigned constant, ull when above 2^32 - 1
    size_t dsm_rpc_R_size(const struct dsm_rpc_R *m);
    int dsm_rpc_R_encode(const struct dsm_rpc_R *m, uint8_t *buf, size_t cap);
    int dsm_rpc_R_decode(struct dsm_rpc_R *m, const uint8_t *buf, size_t len);
        size, encode and decode as for calls: decode takes exactly one
        record (trailing bytes are DSM_EPROTO). To append to a batch,
        encode at buf + used with cap - used; the result is what was added.
    int dsm_rpc_R_decode_next(struct dsm_rpc_R *m, const uint8_t **p,
                              const uint8_t *end);
        walks a sequence of records packed back to back in [*p, end),
        without copying (bytes fields point into the sequence). Returns
          1            a record was decoded into *m; *p is moved past it;
          0            *p == end: the sequence is over (*m is untouched);
          DSM_EPROTO   [*p, end) does not start with one whole valid record
                       (truncated, a length above its MAX or beyond end, or
                       *p > end); *p is not moved, *m is unspecified.
        So bytes after the last whole record are an error, never skipped:
            while ((r = dsm_rpc_R_decode_next(&m, &p, end)) == 1)
                    use(&m);
            if (r < 0)
                    reject the batch;
        Every length is checked against its MAX and the bytes left before
        it is used; each call reads at most DSM_RPC_R_SIZE_MAX bytes.

N_rpc.c: the codecs, the proc descriptors and the id-ordered procs array.

Body encoding: fields in declaration order, no padding, little-endian;
scalars at their natural width (signed ones as their two's complement bit
pattern), bytes<MAX> as u32 length then the data, arrays as u32 count then
the elements, bytes[N] as N raw bytes. Decoding never reads past buf + len,
checks every length against its MAX and the bytes left before using it, and
rejects trailing bytes, so every message has exactly one encoding.
"""

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile

# IDL scalar: (C type, size in bytes, signed)
SCALARS = {
    'u8': ('uint8_t', 1, False),
    'u16': ('uint16_t', 2, False),
    'u32': ('uint32_t', 4, False),
    'u64': ('uint64_t', 8, False),
    'i32': ('int32_t', 4, True),
    'i64': ('int64_t', 8, True),
}
MAX_PROC = 1023           # DSM__RPC_MAX_PROC in net/rpc.h
MAX_LIMIT = 1 << 31       # largest MAX of a variable-length field
INLINE_BYTES_LIMIT = 4096  # largest inline array / fixed bytes in a struct

C_KEYWORDS = set('''
    auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed
    sizeof static struct switch typedef union unsigned void volatile while
    bool true false asm typeof
'''.split())
# Macros from standard headers a user of the generated header may include;
# a member with one of these names would not compile there.
C_MACROS = set('''
    errno assert NULL offsetof stdin stdout stderr EOF unix linux
    static_assert alignas alignof noreturn thread_local complex imaginary
'''.split())

IDENT_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
TOKEN_RE = re.compile(r'\s*(?:([A-Za-z_][A-Za-z0-9_]*)|([0-9][0-9A-Za-z_]*)|([{};<>\[\]])|(\S))')


class RpcError(Exception):
    def __init__(self, line, msg):
        super().__init__(msg)
        self.line = line
        self.msg = msg


class Tok:
    __slots__ = ('kind', 'text', 'line')

    def __init__(self, kind, text, line):
        self.kind = kind  # 'id', 'num', 'punct', 'eof'
        self.text = text
        self.line = line

    def describe(self):
        if self.kind == 'eof':
            return 'end of file'
        return "'%s'" % self.text


class Field:
    def __init__(self, kind, type_, name, line, max_=None, n=None):
        self.kind = kind   # 'scalar', 'bytes' (variable), 'array', 'fixed'
        self.type = type_  # scalar key, or 'bytes'
        self.name = name
        self.line = line
        self.max = max_    # bytes / array
        self.n = n         # fixed

    @property
    def variable(self):
        return self.kind in ('bytes', 'array')


class Proc:
    """A call, a msg, or a record (kind 'record': no id, fields in rec)."""

    def __init__(self, kind, id_, name, inline, line, doc):
        self.kind = kind  # 'call', 'msg' or 'record'
        self.id = id_
        self.name = name
        self.inline = inline
        self.line = line
        self.doc = doc
        self.req = []
        self.rep = []
        self.msg = []
        self.rec = []

    def bodies(self):
        """(suffix, fields) of each struct this proc has; a record's struct
        has no suffix (None)."""
        if self.kind == 'record':
            return [(None, self.rec)]
        if self.kind == 'msg':
            return [('msg', self.msg)]
        return [('req', self.req), ('rep', self.rep)]


# ---------------------------------------------------------------- parsing

def tokenize(text):
    toks = []
    docs = {}  # line of a token -> comment lines right above it
    pending = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        code, hash_, comment = raw.partition('#')
        if not code.strip():
            if hash_:
                pending.append(comment.strip())
            else:
                pending = []
            continue
        first = True
        pos = 0
        while True:
            m = TOKEN_RE.match(code, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            ident, num, punct, other = m.groups()
            if other is not None:
                raise RpcError(lineno, "unexpected character '%s'" % other)
            if ident is not None:
                toks.append(Tok('id', ident, lineno))
            elif num is not None:
                toks.append(Tok('num', num, lineno))
            elif punct is not None:
                toks.append(Tok('punct', punct, lineno))
            else:
                break
            if first:
                docs[lineno] = pending
                first = False
        pending = []
    toks.append(Tok('eof', '', max(1, len(text.splitlines()))))
    return toks, docs


class Parser:
    def __init__(self, text):
        self.toks, self.docs = tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        if t.kind != 'eof':
            self.i += 1
        return t

    def expect(self, text, what=None):
        t = self.next()
        if t.text != text or t.kind not in ('punct', 'id'):
            raise RpcError(t.line, "expected %s, found %s" % (what or "'%s'" % text, t.describe()))
        return t

    def ident(self, what):
        t = self.next()
        if t.kind != 'id':
            raise RpcError(t.line, "expected %s, found %s" % (what, t.describe()))
        check_name(t.text, t.line, what)
        return t

    def number(self, what):
        t = self.next()
        if t.kind != 'num':
            raise RpcError(t.line, "expected %s, found %s" % (what, t.describe()))
        try:
            if not re.fullmatch(r'0|[1-9][0-9]*|0[xX][0-9A-Fa-f]+', t.text):
                raise ValueError
            v = int(t.text, 0)
        except ValueError:
            raise RpcError(t.line, "bad number '%s' for %s" % (t.text, what)) from None
        return v, t.line

    def parse(self):
        procs = []
        while self.peek().kind != 'eof':
            t = self.next()
            if t.kind != 'id' or t.text not in ('call', 'msg', 'record'):
                raise RpcError(t.line, "expected 'call', 'msg' or 'record', found %s"
                               % t.describe())
            procs.append(self.record(t) if t.text == 'record' else self.proc(t))
        return procs

    def record(self, kw):
        name = self.ident('record name')
        p = Proc('record', None, name.text, False, kw.line, self.docs.get(kw.line, []))
        self.expect('{', "'{' after record %s" % p.name)
        p.rec = self.fields('record ' + p.name)
        if not p.rec:
            raise RpcError(kw.line, 'record %s has no fields (a record must take at least '
                           'one byte on the wire)' % p.name)
        return p

    def proc(self, kw):
        id_, idline = self.number('procedure id')
        if not 1 <= id_ <= MAX_PROC:
            raise RpcError(idline, 'procedure id %d out of range 1..%d' % (id_, MAX_PROC))
        name = self.ident('procedure name')
        inline = False
        if self.peek().kind == 'id' and self.peek().text == 'inline':
            self.next()
            inline = True
        p = Proc(kw.text, id_, name.text, inline, kw.line, self.docs.get(kw.line, []))
        self.expect('{')
        if p.kind == 'msg':
            p.msg = self.fields('msg ' + p.name)
            return p
        for block in ('req', 'rep'):
            t = self.next()
            if t.kind != 'id' or t.text != block:
                raise RpcError(t.line, "expected '%s { ... }' in call %s, found %s"
                               % (block, p.name, t.describe()))
            self.expect('{')
            setattr(p, block, self.fields('%s of %s' % (block, p.name)))
        self.expect('}', "'}' closing call %s" % p.name)
        return p

    def fields(self, where):
        out = []
        seen = {}
        while True:
            t = self.next()
            if t.kind == 'punct' and t.text == '}':
                return out
            if t.kind != 'id':
                raise RpcError(t.line, "expected a field type or '}' in %s, found %s"
                               % (where, t.describe()))
            if t.text != 'bytes' and t.text not in SCALARS:
                raise RpcError(t.line, "unknown type '%s' (expected bytes, %s)"
                               % (t.text, ', '.join(SCALARS)))
            name = self.ident('field name')
            f = self.field_shape(t.text, name.text, t.line)
            self.expect(';', "';' after field %s" % name.text)
            if f.name in seen:
                raise RpcError(f.line, "field '%s' repeated in %s (first at line %d)"
                               % (f.name, where, seen[f.name]))
            seen[f.name] = f.line
            out.append(f)

    def field_shape(self, type_, name, line):
        t = self.peek()
        if t.kind == 'punct' and t.text == '<':
            self.next()
            max_, mline = self.number('MAX of field %s' % name)
            self.expect('>', "'>' after MAX of field %s" % name)
            if not 1 <= max_ <= MAX_LIMIT:
                raise RpcError(mline, 'MAX %d of field %s out of range 1..2^31' % (max_, name))
            if type_ == 'bytes':
                return Field('bytes', type_, name, line, max_=max_)
            size = SCALARS[type_][1] * max_
            if size > INLINE_BYTES_LIMIT:
                raise RpcError(mline, 'array %s<%d> takes %d bytes in its struct (limit %d): '
                               'lower MAX or carry the data as bytes<MAX>'
                               % (name, max_, size, INLINE_BYTES_LIMIT))
            return Field('array', type_, name, line, max_=max_)
        if t.kind == 'punct' and t.text == '[':
            self.next()
            n, nline = self.number('size of field %s' % name)
            self.expect(']', "']' after size of field %s" % name)
            if type_ != 'bytes':
                raise RpcError(line, 'fixed-size arrays are only for bytes (%s %s[%d]); '
                               'use %s %s<%d>' % (type_, name, n, type_, name, n))
            if not 1 <= n <= INLINE_BYTES_LIMIT:
                raise RpcError(nline, 'size %d of bytes %s[] out of range 1..%d'
                               % (n, name, INLINE_BYTES_LIMIT))
            return Field('fixed', type_, name, line, n=n)
        if type_ == 'bytes':
            raise RpcError(line, 'bytes field %s needs <MAX> or [N]' % name)
        return Field('scalar', type_, name, line)


def check_name(name, line, what):
    if not IDENT_RE.match(name):
        raise RpcError(line, "%s '%s' is not a C identifier" % (what, name))
    if name.startswith('_') or '__' in name:
        raise RpcError(line, "%s '%s' is reserved (leading '_' or '__')" % (what, name))
    if name in C_KEYWORDS or name in C_MACROS:
        raise RpcError(line, "%s '%s' is a C keyword or standard macro" % (what, name))


def check(procs, name):
    """Checks across the whole file; raises RpcError."""
    if not procs:
        raise RpcError(1, 'no call, msg or record in the file')
    ids, names = {}, {}
    for p in procs:
        if p.kind != 'record':
            if p.id in ids:
                raise RpcError(p.line, 'duplicate id %d (also %s at line %d)'
                               % (p.id, ids[p.id].name, ids[p.id].line))
            ids[p.id] = p
        if p.name in names:
            raise RpcError(p.line, "duplicate name '%s' (first at line %d)"
                           % (p.name, names[p.name].line))
        names[p.name] = p
    # Every name the generated code declares, with where it comes from, so
    # that two IDL names can never produce the same C name.
    ordinary = {}  # identifiers and macros
    tags = {}

    def claim(table, ident, line, what):
        if ident in table:
            oline, owhat = table[ident]
            raise RpcError(line, '%s generates %s, which %s (line %d) also generates'
                           % (what, ident, owhat, oline))
        table[ident] = (line, what)

    up = name.upper()
    claim(ordinary, 'DSM_RPC_%s_H' % up, 1, '--name')
    if has_procs(procs):
        claim(ordinary, 'dsm_rpc_%s_procs' % name, 1, '--name')
        claim(ordinary, 'DSM_RPC_%s_NPROCS' % up, 1, '--name')
    for p in procs:
        what = '%s %s' % (p.kind, p.name)
        pre = 'dsm_rpc_' + p.name
        up = 'DSM_RPC_' + p.name.upper()
        if p.kind == 'record':
            for ident in ('_SIZE_MIN', '_SIZE_MAX'):
                claim(ordinary, up + ident, p.line, what)
            for ident in ('_decode_next', '_parse'):
                claim(ordinary, pre + ident, p.line, what)
        else:
            claim(ordinary, up + '_ID', p.line, what)
            for ident in ['_proc', '_handler', '_serve'] + (
                    ['_send'] if p.kind == 'msg' else ['', '_async', '_reply']):
                claim(ordinary, pre + ident, p.line, what)
        maxes = {}
        for side, fields in p.bodies():
            s = struct_name(p, side)
            claim(tags, s, p.line, what)
            for op in ('size', 'encode', 'decode'):
                claim(ordinary, '%s_%s' % (s, op), p.line, what)
            members = {}  # C member name -> field declaring it
            for f in fields:
                for mname in [f.name] + ([f.name + '_len'] if f.kind == 'array' else []):
                    other = members.get(mname)
                    if other is not None:
                        arr = f if f.kind == 'array' else other
                        raise RpcError(f.line, "field '%s' of %s collides with the length "
                                       'member of array %s' % (mname, what, arr.name))
                    members[mname] = f
                if not f.variable:
                    continue
                if f.name in maxes:
                    other = maxes[f.name]
                    if other.max != f.max:
                        raise RpcError(f.line, 'field %s has MAX %d here but %d at line %d; '
                                       'its %s_%s_MAX must be one value: rename one'
                                       % (f.name, f.max, other.max, other.line, up,
                                          f.name.upper()))
                    continue
                maxes[f.name] = f
                claim(ordinary, '%s_%s_MAX' % (up, f.name.upper()), f.line,
                      'field %s of %s' % (f.name, what))


def has_procs(procs):
    return any(p.kind != 'record' for p in procs)


def parse_file(text, name):
    """Calls and msgs in id order, then records in file order."""
    procs = Parser(text).parse()
    check(procs, name)
    return (sorted((p for p in procs if p.kind != 'record'), key=lambda p: p.id)
            + [p for p in procs if p.kind == 'record'])


# ---------------------------------------------------------------- codegen

def c_comment(lines, indent=''):
    lines = [l.replace('*/', '* /') for l in lines]
    if not lines:
        return []
    if len(lines) == 1:
        return ['%s/* %s */' % (indent, lines[0])]
    return ['%s/*' % indent] + ['%s * %s' % (indent, l) if l else '%s *' % indent
                                for l in lines] + ['%s */' % indent]


def max_macro(p, f):
    return 'DSM_RPC_%s_%s_MAX' % (p.name.upper(), f.name.upper())


def struct_name(p, side):
    if side is None:
        return 'dsm_rpc_' + p.name
    return 'dsm_rpc_%s_%s' % (p.name, side)


def member_lines(p, fields):
    out = []
    for f in fields:
        if f.kind == 'scalar':
            out.append('\t%s %s;' % (SCALARS[f.type][0], f.name))
        elif f.kind == 'bytes':
            out.append('\tstruct dsm__bytes %s; /* at most %s bytes */' % (f.name, max_macro(p, f)))
        elif f.kind == 'array':
            out.append('\tuint32_t %s_len; /* elements used in %s, at most %s */'
                       % (f.name, f.name, max_macro(p, f)))
            out.append('\t%s %s[%s];' % (SCALARS[f.type][0], f.name, max_macro(p, f)))
        else:
            out.append('\tuint8_t %s[%d];' % (f.name, f.n))
    if not out:
        out.append('\tuint8_t unused_; /* empty body: C forbids empty structs */')
    return out


def field_size_min(f):
    return (SCALARS[f.type][1] if f.kind == 'scalar'
            else f.n if f.kind == 'fixed' else 4)


def field_size_max(f):
    if f.kind == 'bytes':
        return 4 + f.max
    if f.kind == 'array':
        return 4 + SCALARS[f.type][1] * f.max
    return field_size_min(f)


def c_unsigned(v):
    return '%du' % v if v <= 0xffffffff else '%dull' % v


def record_header(p):
    s = struct_name(p, None)
    up = 'DSM_RPC_' + p.name.upper()
    o = ['/* ---- record %s ---- */' % p.name]
    o += c_comment(p.doc)
    for f in p.rec:
        if f.variable:
            o.append('#define %s %du' % (max_macro(p, f), f.max))
    o.append('/* Encoded size with every variable field empty, and at most. */')
    o.append('#define %s_SIZE_MIN %s' % (up, c_unsigned(sum(field_size_min(f) for f in p.rec))))
    o.append('#define %s_SIZE_MAX %s' % (up, c_unsigned(sum(field_size_max(f) for f in p.rec))))
    o.append('')
    o.append('struct %s {' % s)
    o += member_lines(p, p.rec)
    o.append('};')
    o.append('size_t %s_size(const struct %s *m);' % (s, s))
    o.append('int %s_encode(const struct %s *m, uint8_t *buf, size_t cap);' % (s, s))
    o.append('int %s_decode(struct %s *m, const uint8_t *buf, size_t len);' % (s, s))
    o.append('/* Next record of the sequence [*p, end): 1 (*p moved past it), 0 at the')
    o.append(' * end, DSM_EPROTO when [*p, end) does not start with a whole record. */')
    o.append('int %s_decode_next(struct %s *m, const uint8_t **p, const uint8_t *end);'
             % (s, s))
    o.append('')
    return o


def has_bytes(fields):
    return any(f.kind == 'bytes' for f in fields)


def gen_header(procs, name, src):
    up = name.upper()
    o = []
    o += ['/*',
          ' * Generated by net/rpcgen.py from %s: do not edit.' % src,
          ' *',
          ' * For each call C: struct dsm_rpc_C_req / _rep, their codecs, a',
          ' * synchronous and an async client stub, and the server-side handler',
          ' * type, registration (dsm_rpc_C_serve) and deferred reply. A one-way',
          ' * msg M has struct dsm_rpc_M_msg, its codecs, dsm_rpc_M_send and a',
          ' * handler. Codecs:',
          ' *   _size()   exact encoded size of a valid message;',
          ' *   _encode() bytes written, DSM_EINVAL when a length exceeds its MAX',
          ' *             (or bytes of non-zero length have no pointer),',
          ' *             DSM_EMSGSIZE when cap is too small; writes nothing on error;',
          ' *   _decode() 0, or DSM_EPROTO when truncated, a length exceeds its',
          ' *             MAX, or bytes are left over (*m is then unspecified).',
          ' *             Decoded bytes fields point into buf (no copy).',
          ' * Handlers return 0 (the reply in *rep is sent), DSM__RPC_DEFERRED',
          ' * (answer later with dsm_rpc_C_reply) or a negative code (sent as the',
          ' * reply status, without body). Async callbacks (dsm__rpc_done_fn) get',
          ' * rep as a const void * that points to a struct dsm_rpc_C_rep.',
          ' *',
          ' * A record R (a wire format that is not a procedure) has struct',
          ' * dsm_rpc_R, the same three codecs, DSM_RPC_R_SIZE_MIN/_SIZE_MAX, and',
          ' * dsm_rpc_R_decode_next() to walk records packed back to back: 1 and',
          ' * *p moved past one record, 0 at the end, DSM_EPROTO (*p unmoved) when',
          ' * what is left is not one whole valid record.',
          ' */',
          '#ifndef DSM_RPC_%s_H' % up,
          '#define DSM_RPC_%s_H' % up,
          '',
          '#include <stddef.h>',
          '#include <stdint.h>',
          '',
          '#include "rpc.h"',
          '']
    for p in procs:
        if p.kind == 'record':
            o += record_header(p)
            continue
        pup = p.name.upper()
        o.append('/* ---- %s %d %s%s ---- */'
                 % (p.kind, p.id, p.name, ' (inline: handler on the network thread)'
                    if p.inline else ''))
        o += c_comment(p.doc)
        o.append('#define DSM_RPC_%s_ID %d' % (pup, p.id))
        done = set()
        for side, fields in p.bodies():
            for f in fields:
                if f.variable and f.name not in done:
                    done.add(f.name)
                    o.append('#define %s %du' % (max_macro(p, f), f.max))
        o.append('')
        for side, fields in p.bodies():
            s = struct_name(p, side)
            o.append('struct %s {' % s)
            o += member_lines(p, fields)
            o.append('};')
            o.append('size_t %s_size(const struct %s *m);' % (s, s))
            o.append('int %s_encode(const struct %s *m, uint8_t *buf, size_t cap);' % (s, s))
            o.append('int %s_decode(struct %s *m, const uint8_t *buf, size_t len);' % (s, s))
            o.append('')
        pre = 'dsm_rpc_' + p.name
        o.append('extern const struct dsm__rpc_proc %s_proc;' % pre)
        o.append('')
        if p.kind == 'call':
            req, rep = struct_name(p, 'req'), struct_name(p, 'rep')
            keep = has_bytes(p.rep)
            if keep:
                o += ['/* Synchronous call. The reply\'s bytes fields point into *keep, which',
                      ' * stays valid until dsm__rpc_reply_release(keep). */']
            else:
                o.append('/* Synchronous call (see dsm__rpc_call). */')
            o.append('static inline int %s(struct dsm__rpc *r, unsigned peer, const struct %s *req,'
                     % (pre, req))
            if keep:
                o.append('\t\tstruct %s *rep, struct dsm__rpc_reply *keep, int timeout_ms)' % rep)
            else:
                o.append('\t\tstruct %s *rep, int timeout_ms)' % rep)
            o.append('{')
            o.append('\treturn dsm__rpc_call(r, peer, &%s_proc, req, rep, %s, timeout_ms);'
                     % (pre, 'keep' if keep else 'NULL'))
            o.append('}')
            o.append('')
            o.append('/* Asynchronous call: done(arg, status, rep) runs once on the network')
            o.append(' * thread; rep is NULL or points to a const struct %s. */' % rep)
            o.append('static inline int %s_async(struct dsm__rpc *r, unsigned peer, const struct %s *req,'
                     % (pre, req))
            o.append('\t\tdsm__rpc_done_fn done, void *arg)')
            o.append('{')
            o.append('\treturn dsm__rpc_call_async(r, peer, &%s_proc, req, done, arg);' % pre)
            o.append('}')
            o.append('')
            o.append('/* Server: runs on the %s. */'
                     % ('network thread and must not block' if p.inline else 'worker pool'))
            o.append('typedef int (*%s_handler)(struct dsm__rpc_ctx *ctx, const struct %s *req,'
                     % (pre, req))
            o.append('\t\tstruct %s *rep);' % rep)
        else:
            m = struct_name(p, 'msg')
            o.append('/* Send the one-way message (see dsm__rpc_send). */')
            o.append('static inline int %s_send(struct dsm__rpc *r, unsigned peer, const struct %s *m)'
                     % (pre, m))
            o.append('{')
            o.append('\treturn dsm__rpc_send(r, peer, &%s_proc, m);' % pre)
            o.append('}')
            o.append('')
            o.append('/* Server: runs on the %s; its result is not sent anywhere. */'
                     % ('network thread and must not block' if p.inline else 'worker pool'))
            o.append('typedef int (*%s_handler)(struct dsm__rpc_ctx *ctx, const struct %s *m);'
                     % (pre, m))
        o.append('static inline int %s_serve(struct dsm__rpc *r, %s_handler h, void *arg)'
                 % (pre, pre))
        o.append('{')
        o.append('\treturn dsm__rpc_set_handler(r, &%s_proc, (dsm__rpc_fn)h, arg);' % pre)
        o.append('}')
        if p.kind == 'call':
            o.append('')
            o.append('/* Answer a request whose handler returned DSM__RPC_DEFERRED. */')
            o.append('static inline int %s_reply(struct dsm__rpc_token *t, int status,'
                     % pre)
            o.append('\t\tconst struct %s *rep)' % struct_name(p, 'rep'))
            o.append('{')
            o.append('\treturn dsm__rpc_reply_deferred(t, status, rep);')
            o.append('}')
        o.append('')
    calls = [p for p in procs if p.kind != 'record']
    if calls:
        o.append('/* Every procedure of this file, in id order, for dsm__rpc_add_procs(). */')
        o.append('#define DSM_RPC_%s_NPROCS %d' % (up, len(calls)))
        o.append('extern const struct dsm__rpc_proc *const dsm_rpc_%s_procs[DSM_RPC_%s_NPROCS];'
                 % (name, up))
        o.append('')
    o.append('#endif /* DSM_RPC_%s_H */' % up)
    return '\n'.join(o) + '\n'


class Codec:
    """Emits the size/encode/decode functions of one struct."""

    def __init__(self, p, side, fields):
        self.p, self.side, self.fields = p, side, fields
        self.s = struct_name(p, side)
        self.helpers = set()  # signed conversions used

    def fixed_size(self):
        n = 0
        for f in self.fields:
            if f.kind == 'scalar':
                n += SCALARS[f.type][1]
            elif f.kind == 'fixed':
                n += f.n
            else:
                n += 4
        return n

    def size_fn(self):
        s = self.s
        o = ['size_t %s_size(const struct %s *m)' % (s, s), '{']
        terms = []
        for f in self.fields:
            if f.kind == 'bytes':
                terms.append('(size_t)m->%s.len' % f.name)
            elif f.kind == 'array':
                esz = SCALARS[f.type][1]
                terms.append('%s(size_t)m->%s_len' % ('' if esz == 1 else '%d * ' % esz, f.name))
        if not terms:
            o.append('\t(void)m;')
        o.append('\treturn %s;' % ' + '.join(['%d' % self.fixed_size()] + terms))
        o.append('}')
        return o

    def put_scalar(self, type_, src):
        """Store src at buf + off."""
        ctype, size, signed = SCALARS[type_]
        if size == 1:
            return 'buf[off] = %s;' % src
        val = '(uint%d_t)%s' % (size * 8, src) if signed else src
        return 'dsm__put_le%d(buf + off, %s);' % (size * 8, val)

    def get_scalar(self, type_):
        """The value at buf + off."""
        ctype, size, signed = SCALARS[type_]
        if size == 1:
            return 'buf[off]'
        raw = 'dsm__get_le%d(buf + off)' % (size * 8)
        if signed:
            self.helpers.add(size * 8)
            return 'to_i%d(%s)' % (size * 8, raw)
        return raw

    def encode_fn(self):
        s, p = self.s, self.p
        o = ['int %s_encode(const struct %s *m, uint8_t *buf, size_t cap)' % (s, s), '{']
        if not self.fields:
            o += ['\t(void)m;', '\t(void)buf;', '\t(void)cap;', '\treturn 0;', '}']
            return o
        loop = any(f.kind == 'array' and SCALARS[f.type][1] > 1 for f in self.fields)
        o.append('\tsize_t off = 0, n;')
        if loop:
            o.append('\tuint32_t i;')
        o.append('')
        for f in self.fields:
            if f.kind == 'bytes':
                o.append('\tif (m->%s.len > %s || (m->%s.len && !m->%s.ptr))'
                         % (f.name, max_macro(p, f), f.name, f.name))
                o.append('\t\treturn DSM_EINVAL;')
            elif f.kind == 'array':
                o.append('\tif (m->%s_len > %s)' % (f.name, max_macro(p, f)))
                o.append('\t\treturn DSM_EINVAL;')
        o.append('\tn = %s_size(m);' % s)
        o.append('\tif (n > cap || n > INT_MAX)')
        o.append('\t\treturn DSM_EMSGSIZE;')
        for f in self.fields:
            if f.kind == 'scalar':
                o.append('\t' + self.put_scalar(f.type, 'm->' + f.name))
                o.append('\toff += %d;' % SCALARS[f.type][1])
            elif f.kind == 'fixed':
                o.append('\tmemcpy(buf + off, m->%s, %d);' % (f.name, f.n))
                o.append('\toff += %d;' % f.n)
            elif f.kind == 'bytes':
                o.append('\tdsm__put_le32(buf + off, m->%s.len);' % f.name)
                o.append('\toff += 4;')
                o.append('\tif (m->%s.len)' % f.name)
                o.append('\t\tmemcpy(buf + off, m->%s.ptr, m->%s.len);' % (f.name, f.name))
                o.append('\toff += m->%s.len;' % f.name)
            else:
                esz = SCALARS[f.type][1]
                o.append('\tdsm__put_le32(buf + off, m->%s_len);' % f.name)
                o.append('\toff += 4;')
                if esz == 1:
                    o.append('\tmemcpy(buf + off, m->%s, m->%s_len);' % (f.name, f.name))
                    o.append('\toff += m->%s_len;' % f.name)
                else:
                    o.append('\tfor (i = 0; i < m->%s_len; i++, off += %d)' % (f.name, esz))
                    o.append('\t\t' + self.put_scalar(f.type, 'm->%s[i]' % f.name))
        o.append('\treturn (int)off;')
        o.append('}')
        return o

    def decode_fn(self):
        s = self.s
        o = ['int %s_decode(struct %s *m, const uint8_t *buf, size_t len)' % (s, s), '{']
        if not self.fields:
            o += ['\t(void)m;', '\t(void)buf;', '\treturn len ? DSM_EPROTO : 0;', '}']
            return o
        o += self.decode_body()
        o.append('\treturn off == len ? 0 : DSM_EPROTO;')
        o.append('}')
        return o

    def record_decode_fns(self):
        """A record's parse (one record at the start of buf), decode (exactly
        one record) and decode_next (the next of a sequence)."""
        s = self.s
        o = ['/* The record at the start of buf (len bytes there): 0 and *used, or',
             ' * DSM_EPROTO. */',
             'static int %s_parse(struct %s *m, const uint8_t *buf, size_t len, size_t *used)'
             % (s, s), '{']
        o += self.decode_body()
        o += ['\t*used = off;', '\treturn 0;', '}', '']
        o += ['int %s_decode(struct %s *m, const uint8_t *buf, size_t len)' % (s, s), '{',
              '\tsize_t used;',
              '\tint e = %s_parse(m, buf, len, &used);' % s, '',
              '\treturn e ? e : used == len ? 0 : DSM_EPROTO;', '}', '']
        o += ['int %s_decode_next(struct %s *m, const uint8_t **p, const uint8_t *end)'
              % (s, s), '{',
              '\tsize_t used;',
              '\tint e;', '',
              '\tif (*p == end)',
              '\t\treturn 0;',
              '\tif (!*p || !end || *p > end)',
              '\t\treturn DSM_EPROTO;',
              '\te = %s_parse(m, *p, (size_t)(end - *p), &used);' % s,
              '\tif (e)',
              '\t\treturn e;',
              '\t*p += used;',
              '\treturn 1;', '}']
        return o

    def decode_body(self):
        """Declarations and checked reads of every field from buf[0, len),
        leaving the bytes consumed in off; returns DSM_EPROTO on a bad one."""
        p = self.p
        o = []
        var = any(f.variable for f in self.fields)
        loop = any(f.kind == 'array' and SCALARS[f.type][1] > 1 for f in self.fields)
        o.append('\tsize_t off = 0;')
        if var:
            o.append('\tuint32_t n;')
        if loop:
            o.append('\tuint32_t i;')
        o.append('')
        # Segments: a run of fixed fields plus the length prefix of the
        # variable field that ends it get one bounds check.
        segs, cur = [], []
        for f in self.fields:
            cur.append(f)
            if f.variable:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
        for seg in segs:
            need = 0
            for f in seg:
                need += (SCALARS[f.type][1] if f.kind == 'scalar'
                         else f.n if f.kind == 'fixed' else 4)
            o.append('\tif (len - off < %d)' % need)
            o.append('\t\treturn DSM_EPROTO;')
            for f in seg:
                if f.kind == 'scalar':
                    o.append('\tm->%s = %s;' % (f.name, self.get_scalar(f.type)))
                    o.append('\toff += %d;' % SCALARS[f.type][1])
                elif f.kind == 'fixed':
                    o.append('\tmemcpy(m->%s, buf + off, %d);' % (f.name, f.n))
                    o.append('\toff += %d;' % f.n)
                elif f.kind == 'bytes':
                    o.append('\tn = dsm__get_le32(buf + off);')
                    o.append('\toff += 4;')
                    o.append('\tif (n > %s || len - off < n)' % max_macro(p, f))
                    o.append('\t\treturn DSM_EPROTO;')
                    o.append('\tm->%s.ptr = buf + off;' % f.name)
                    o.append('\tm->%s.len = n;' % f.name)
                    o.append('\toff += n;')
                else:
                    esz = SCALARS[f.type][1]
                    o.append('\tn = dsm__get_le32(buf + off);')
                    o.append('\toff += 4;')
                    o.append('\tif (n > %s || len - off < %s(size_t)n)'
                             % (max_macro(p, f), '' if esz == 1 else '%d * ' % esz))
                    o.append('\t\treturn DSM_EPROTO;')
                    o.append('\tm->%s_len = n;' % f.name)
                    if esz == 1:
                        o.append('\tmemcpy(m->%s, buf + off, n);' % f.name)
                        o.append('\toff += n;')
                    else:
                        o.append('\tfor (i = 0; i < n; i++, off += %d)' % esz)
                        o.append('\t\tm->%s[i] = %s;' % (f.name, self.get_scalar(f.type)))
        return o

    def wrappers(self):
        """Type-erased forms for the proc table (no function pointer casts)."""
        s = self.s
        v = '%s_%s' % (self.p.name, self.side)
        return ['static size_t %s_size_v(const void *m)' % v, '{',
                '\treturn %s_size(m);' % s, '}', '',
                'static int %s_encode_v(const void *m, uint8_t *buf, size_t cap)' % v, '{',
                '\treturn %s_encode(m, buf, cap);' % s, '}', '',
                'static int %s_decode_v(void *m, const uint8_t *buf, size_t len)' % v, '{',
                '\treturn %s_decode(m, buf, len);' % s, '}']


def gen_source(procs, name, src, header):
    body = []
    helpers = set()
    need_empty = any(p.kind == 'msg' for p in procs)
    if need_empty:
        body += ['/* The rep slots of one-way messages: an empty body. */',
                 'static size_t empty_size_v(const void *m)', '{',
                 '\t(void)m;', '\treturn 0;', '}', '',
                 'static int empty_encode_v(const void *m, uint8_t *buf, size_t cap)', '{',
                 '\t(void)m;', '\t(void)buf;', '\t(void)cap;', '\treturn 0;', '}', '',
                 'static int empty_decode_v(void *m, const uint8_t *buf, size_t len)', '{',
                 '\t(void)m;', '\t(void)buf;', '\treturn len ? DSM_EPROTO : 0;', '}', '']
    calls = [p for p in procs if p.kind != 'record']
    for p in procs:
        pre = 'dsm_rpc_' + p.name
        if p.kind == 'record':
            c = Codec(p, None, p.rec)
            body.append('/* ---- record %s ---- */' % p.name)
            body.append('')
            for fn in (c.size_fn(), c.encode_fn(), c.record_decode_fns()):
                body += fn
                body.append('')
            helpers |= c.helpers
            continue
        body.append('/* ---- %s %d %s ---- */' % (p.kind, p.id, p.name))
        body.append('')
        for side, fields in p.bodies():
            c = Codec(p, side, fields)
            for fn in (c.size_fn(), c.encode_fn(), c.decode_fn(), c.wrappers()):
                body += fn
                body.append('')
            helpers |= c.helpers
        body.append('static int %s_invoke_v(dsm__rpc_fn fn, struct dsm__rpc_ctx *ctx, '
                    'const void *req, void *rep)' % p.name)
        body.append('{')
        if p.kind == 'call':
            body.append('\treturn ((%s_handler)fn)(ctx, req, rep);' % pre)
        else:
            body.append('\t(void)rep;')
            body.append('\treturn ((%s_handler)fn)(ctx, req);' % pre)
        body.append('}')
        body.append('')
        flags = []
        if p.inline:
            flags.append('DSM__RPC_F_INLINE')
        if p.kind == 'msg':
            flags.append('DSM__RPC_F_ONEWAY')
        req = 'msg' if p.kind == 'msg' else 'req'
        rep = 'empty' if p.kind == 'msg' else '%s_rep' % p.name
        body += ['const struct dsm__rpc_proc %s_proc = {' % pre,
                 '\t.name = "%s",' % p.name,
                 '\t.id = DSM_RPC_%s_ID,' % p.name.upper(),
                 '\t.flags = %s,' % (' | '.join(flags) or '0'),
                 '\t.req_struct_size = sizeof(struct %s),' % struct_name(p, req),
                 '\t.rep_struct_size = %s,' % ('0' if p.kind == 'msg'
                                               else 'sizeof(struct %s)' % struct_name(p, 'rep')),
                 '\t.req_size = %s_%s_size_v,' % (p.name, req),
                 '\t.req_encode = %s_%s_encode_v,' % (p.name, req),
                 '\t.req_decode = %s_%s_decode_v,' % (p.name, req),
                 '\t.rep_size = %s_size_v,' % rep,
                 '\t.rep_encode = %s_encode_v,' % rep,
                 '\t.rep_decode = %s_decode_v,' % rep,
                 '\t.invoke = %s_invoke_v,' % p.name,
                 '};', '']
    if calls:
        body.append('const struct dsm__rpc_proc *const dsm_rpc_%s_procs[DSM_RPC_%s_NPROCS] = {'
                    % (name, name.upper()))
        for p in calls:
            body.append('\t&dsm_rpc_%s_proc,' % p.name)
        body.append('};')

    o = ['/*',
         ' * Generated by net/rpcgen.py from %s: do not edit.' % src,
         ' * Codecs and procedure descriptors; see %s for the contracts.' % header,
         ' * Thread-safe: nothing here has state.',
         ' */',
         '#include <limits.h>',
         '#include <string.h>',
         '',
         '#include "%s"' % header,
         '#include "le.h"',
         '']
    if calls:
        o += ['_Static_assert(%d <= DSM__RPC_MAX_PROC, "procedure ids fit the runtime");'
              % max(p.id for p in calls), '']
    for bits in sorted(helpers):
        o += ['/* Two\'s complement bit pattern to int%d_t, without implementation-'
              'defined conversions. */' % bits,
              'static inline int%d_t to_i%d(uint%d_t v)' % (bits, bits, bits),
              '{',
              '\treturn v <= INT%d_MAX ? (int%d_t)v : (int%d_t)(v - INT%d_MAX - 1) + INT%d_MIN;'
              % (bits, bits, bits, bits, bits),
              '}',
              '']
    return '\n'.join(o + body) + '\n'


def generate(text, name, src, header_name):
    procs = parse_file(text, name)
    return gen_header(procs, name, src), gen_source(procs, name, src, header_name)


# ---------------------------------------------------------------- self-test

GOOD = '''
# A comment
call 1 a inline {
    req { u8 x; u16 y; u32 z; u64 w; i32 s; i64 t; bytes b<10>; u16 arr<3>; bytes f[4]; }
    rep { }
}
msg 2 b { }
call 0x3 c { req { } rep { bytes data<2147483648>; i64 v<512>; } }
# A record between procedures: codecs only
record r { u8 x; u16 y; bytes b<10>; u32 arr<3>; bytes f[4]; i64 v<2>; i32 s; }
record big { bytes d1<2147483648>; bytes d2<2147483648>; }
record one { u8 x; }
'''

# A file of records only: no procedure table.
GOOD_RECORDS = '''
# an element of a batch
record item { u64 page; bytes diff<98317>; }
record arr { i32 v<4>; }
'''

# (text, generated header or source, substring that must be there (True) or
# must not (False)): the generated API of records.
GOOD_OUTPUT = [
    (GOOD, 'h', 'struct dsm_rpc_r {', True),
    (GOOD, 'h', '#define DSM_RPC_R_B_MAX 10u', True),
    (GOOD, 'h', '#define DSM_RPC_R_SIZE_MIN 23u', True),             # 1+2+4+4+4+4+4
    (GOOD, 'h', '#define DSM_RPC_R_SIZE_MAX 61u', True),             # + 10 + 12 + 16
    (GOOD, 'h', '#define DSM_RPC_BIG_SIZE_MAX 4294967304ull', True),  # 2 * (4 + 2^31)
    (GOOD, 'h', '#define DSM_RPC_ONE_SIZE_MIN 1u', True),
    (GOOD, 'h', 'int dsm_rpc_r_decode_next(struct dsm_rpc_r *m, const uint8_t **p, '
                'const uint8_t *end);', True),
    (GOOD, 'h', 'int dsm_rpc_r_encode(const struct dsm_rpc_r *m, uint8_t *buf, size_t cap);',
     True),
    (GOOD, 'h', 'DSM_RPC_R_ID', False),
    (GOOD, 'h', 'dsm_rpc_r_proc', False),
    (GOOD, 'h', '#define DSM_RPC_T_NPROCS 3', True),                  # records not counted
    (GOOD, 'c', '\t&dsm_rpc_r_proc', False),
    (GOOD, 'c', 'static int dsm_rpc_r_parse(', True),
    (GOOD_RECORDS, 'h', '/* an element of a batch */', True),
    (GOOD_RECORDS, 'h', '#define DSM_RPC_ITEM_SIZE_MAX 98329u', True),
    (GOOD_RECORDS, 'h', 'NPROCS', False),
    (GOOD_RECORDS, 'h', '_procs', False),
    (GOOD_RECORDS, 'c', '_procs', False),
    (GOOD_RECORDS, 'c', 'DSM__RPC_MAX_PROC', False),
]

# (input, substring expected in the message, expected line)
BAD = [
    ('call 1 a { req { } rep { } ', "expected '}' closing call a", 1),
    ('call 1 a { req { } }', "expected 'rep { ... }'", 1),
    ('call 1 a { rep { } req { } }', "expected 'req { ... }'", 1),
    ('msg 1 a { u32 x }', "expected ';' after field x", 1),
    ('msg 1 a { u32 x; }\nmsg 1 b { }', 'duplicate id 1', 2),
    ('msg 1 a { }\nmsg 2 a { }', "duplicate name 'a'", 2),
    ('msg 1 a { float x; }', "unknown type 'float'", 1),
    ('msg 1 a { bytes x<0>; }', 'MAX 0 of field x out of range', 1),
    ('msg 1 a { bytes x<2147483649>; }', 'MAX 2147483649 of field x out of range', 1),
    ('msg 1 a { u32 x; u32 x; }', "field 'x' repeated", 1),
    ('msg 1 a {\n u32 x;\n u8 y;\n u64 x;\n}', "field 'x' repeated in msg a (first at line 2)", 4),
    ('msg 0 a { }', 'procedure id 0 out of range', 1),
    ('msg 1024 a { }', 'procedure id 1024 out of range', 1),
    ('msg 1 a { u64 x<513>; }', 'takes 4104 bytes', 1),
    ('msg 1 a { u32 x[4]; }', 'fixed-size arrays are only for bytes', 1),
    ('msg 1 a { bytes x[0]; }', 'size 0 of bytes x[] out of range', 1),
    ('msg 1 a { bytes x; }', 'needs <MAX> or [N]', 1),
    ('msg 1 int { }', "'int' is a C keyword", 1),
    ('msg 1 a { u8 errno; }', "'errno' is a C keyword or standard macro", 1),
    ('msg 1 _a { }', 'reserved', 1),
    ('msg 1 a__b { }', 'reserved', 1),
    ('msg 1 a { u8 x-y; }', "unexpected character '-'", 1),
    ('msg 1 a { u8 x<1a>; }', "bad number '1a'", 1),
    ('msg 1 a { u8 x<012>; }', "bad number '012'", 1),
    ('msg 1 a { u8 x<-1>; }', "unexpected character '-'", 1),
    ('rpc 1 a { }', "expected 'call', 'msg' or 'record'", 1),
    ('msg a { }', 'expected procedure id', 1),
    ('msg 1 a inline inline { }', "expected '{'", 1),
    ('', 'no call, msg or record', 1),
    ('# only a comment\n', 'no call, msg or record', 1),
    ('msg 1 a { u32 x<4>; u32 x_len; }', "field 'x_len' of msg a collides", 1),
    ('msg 1 a { u32 x_len; u32 x<4>; }', "field 'x_len' of msg a collides", 1),
    ('call 1 a { req { bytes d<4>; } rep { bytes d<5>; } }', 'field d has MAX 5 here but 4', 1),
    ('msg 1 a_b { bytes c<4>; }\nmsg 2 a { bytes b_c<4>; }', 'DSM_RPC_A_B_C_MAX', 2),
    ('msg 1 a { bytes x<4>; bytes X<4>; }', 'DSM_RPC_A_X_MAX', 1),
    ('call 1 a { req { } rep { } }\ncall 2 a_req_size { req { } rep { } }',
     'dsm_rpc_a_req_size', 2),
    ('msg 1 e { }\nmsg 2 E { }', 'DSM_RPC_E_ID', 2),
    # records
    ('record a { }', 'record a has no fields', 1),
    ('record 1 a { u8 x; }', 'expected record name', 1),
    ('record a inline { u8 x; }', "expected '{' after record a", 1),
    ('record a { u8 x; }\nrecord a { u8 y; }', "duplicate name 'a'", 2),
    ('msg 1 a { }\nrecord a { u8 x; }', "duplicate name 'a'", 2),
    ('record a { u8 x; u8 x; }', "field 'x' repeated in record a", 1),
    ('record a { bytes x; }', 'needs <MAX> or [N]', 1),
    ('record a { u64 x<513>; }', 'takes 4104 bytes', 1),
    ('record a { bytes d<0>; }', 'MAX 0 of field d out of range', 1),
    ('record a { u32 x<4>; u32 x_len; }', "field 'x_len' of record a collides", 1),
    ('record a { bytes size<4>; }', 'DSM_RPC_A_SIZE_MAX', 1),
    ('call 1 a { req { } rep { } }\nrecord a_req { u8 x; }', 'dsm_rpc_a_req', 2),
    ('record a { u8 x; }\ncall 1 a_decode { req { } rep { } }', 'dsm_rpc_a_decode', 2),
    ('record a { u8 x; }\ncall 1 a_decode_next { req { } rep { } }',
     'dsm_rpc_a_decode_next', 2),
    ('record a_b { bytes c<4>; }\nrecord a { bytes b_c<4>; }', 'DSM_RPC_A_B_C_MAX', 2),
    ('record a { u8 x; } record', 'expected record name', 1),
    ('record a { u8 x; }\ncall 1 b { req { } rep { } }\ncall 1 c { req { } rep { } }',
     'duplicate id 1', 3),
]


def compile_check(d, texts):
    """Compile the C generated from each text with the C compiler ($CC or
    cc), when there is one: None (no compiler), or a list of failures."""
    import shutil
    import subprocess
    cc = os.environ.get('CC', 'cc').split()
    if not cc or not shutil.which(cc[0]):
        return None
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for i, text in enumerate(texts):
        h, c = generate(text, 'g%d' % i, 'good%d.rpc' % i, 'g%d_rpc.h' % i)
        with open(os.path.join(d, 'g%d_rpc.h' % i), 'w') as f:
            f.write(h)
        with open(os.path.join(d, 'g%d_rpc.c' % i), 'w') as f:
            f.write(c)
        r = subprocess.run(cc + ['-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-Werror',
                                 '-fsyntax-only', '-I', d] +
                           ['-I' + os.path.join(top, x) for x in ('net', 'common', 'include')] +
                           [os.path.join(d, 'g%d_rpc.c' % i)],
                           capture_output=True, text=True)
        if r.returncode:
            out.append('FAIL: generated C of text %d does not compile:\n%s' % (i, r.stderr))
    return out


def self_test():
    failures = 0
    total = len(BAD) + len(GOOD_OUTPUT) + 4
    generate(GOOD, 't', 'good.rpc', 't_rpc.h')
    generate(GOOD_RECORDS, 't', 'good.rpc', 't_rpc.h')
    for text, which, want, present in GOOD_OUTPUT:
        h, c = generate(text, 't', 'good.rpc', 't_rpc.h')
        if (want in (h if which == 'h' else c)) != present:
            print('FAIL: %s %s in the generated %s' % (repr(want), 'missing' if present
                                                        else 'present', which))
            failures += 1
    for text, want, line in BAD:
        try:
            generate(text, 't', 'bad.rpc', 't_rpc.h')
        except RpcError as e:
            if want not in e.msg or e.line != line:
                print('FAIL: %r -> line %d: %s (wanted line %d: ...%s...)'
                      % (text, e.line, e.msg, line, want))
                failures += 1
            continue
        print('FAIL: %r accepted (wanted: %s)' % (text, want))
        failures += 1
    # The command line: exit status 1, a file:line message, no output files.
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, 'bad.rpc')
        with open(bad, 'w') as f:
            f.write('msg 1 a { }\nmsg 1 b { }\n')
        oh, oc = os.path.join(d, 'o_rpc.h'), os.path.join(d, 'o_rpc.c')
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(['--name', 't', bad, oh, oc])
        if rc != 1 or '%s:2: error: duplicate id 1' % bad not in err.getvalue() \
                or os.path.exists(oh) or os.path.exists(oc):
            print('FAIL: command line on a bad file: rc %d, stderr %r' % (rc, err.getvalue()))
            failures += 1
        good = os.path.join(d, 'good.rpc')
        with open(good, 'w') as f:
            f.write(GOOD)
        if main(['--name', 't', good, oh, oc]) != 0 or not os.path.exists(oc):
            print('FAIL: command line on a good file')
            failures += 1
        errs = compile_check(d, [GOOD, GOOD_RECORDS])
        if errs is None:
            print('rpcgen self-test: no C compiler ($CC or cc): generated C not compiled')
            total -= 1
        elif errs:
            print('\n'.join(errs))
            failures += 1
    print('rpcgen self-test: %d/%d passed' % (total - failures, total))
    return 1 if failures else 0


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description='Generate C from an RPC interface file.')
    ap.add_argument('--name', help='interface name (C identifier): N_rpc.h, dsm_rpc_N_procs')
    ap.add_argument('--self-test', action='store_true', help='run the generator\'s own tests')
    ap.add_argument('files', nargs='*', metavar='FILE', help='INPUT.rpc OUT.h OUT.c')
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    if len(a.files) != 3 or not a.name:
        ap.print_usage(sys.stderr)
        print('rpcgen: need --name N INPUT OUT.h OUT.c', file=sys.stderr)
        return 1
    if not re.fullmatch(r'[a-z][a-z0-9_]*', a.name) or '__' in a.name:
        print("rpcgen: --name '%s' must be a lower-case C identifier" % a.name, file=sys.stderr)
        return 1
    src, out_h, out_c = a.files
    try:
        with open(src, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print('%s: error: %s' % (src, e), file=sys.stderr)
        return 1
    try:
        h, c = generate(text, a.name, os.path.basename(src), os.path.basename(out_h))
    except RpcError as e:
        print('%s:%d: error: %s' % (src, e.line, e.msg), file=sys.stderr)
        return 1
    for path, data in ((out_h, h), (out_c, c)):
        with open(path, 'w', encoding='utf-8') as f:
            f.write(data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
