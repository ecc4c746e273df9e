/*
 * converters._tarheader: the common ustar header, decoded and encoded in C.
 *
 * An optional accelerator for converters/rootfs.py (BoundedTarInfo.frombuf) and
 * converters/tarwriter.py (_ustar_header). Both keep their pure-Python code, which is
 * the definition: each function here returns exactly what that code returns for the
 * headers it takes, and None for every other header, which then goes through the Python
 * code (and tarfile) as before. The tests run the same cases through both.
 *
 * Header layout: POSIX.1-1988 ustar (IEEE Std 1003.1, "ustar Interchange Format"), the
 * fields tarfile reads and writes: name 0-100, mode 100-108, uid 108-116, gid 116-124,
 * size 124-136, mtime 136-148, chksum 148-156, typeflag 156, linkname 157-257,
 * magic+version 257-265, uname 265-297, gname 297-329, devmajor 329-337,
 * devminor 337-345, prefix 345-500.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define BLOCK 512

/* The ustar number fields tarfile's frombuf reads: offset and length. */
static const int NUMBER_FIELDS[8][2] = {
    {100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}, {148, 8}, {329, 8}, {337, 8},
};

static int
is_ascii_space(unsigned char c)
{
    /* What bytes.strip() strips. */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* An octal field as converters.rootfs._octal reads it, only when it is plain: cut at the
 * first NUL, ASCII whitespace stripped, then nothing or only the digits 0-7. Returns 0
 * and sets *out, or -1 for anything else (base-256, signs, prefixes, underscores, bad
 * digits), which the Python code decides. */
static int
parse_octal(const unsigned char *field, int length, long long *out)
{
    if (field[0] == 0x80 || field[0] == 0xff)
        return -1;
    const unsigned char *nul = memchr(field, 0, (size_t)length);
    int end = nul ? (int)(nul - field) : length;
    int start = 0;
    while (start < end && is_ascii_space(field[start]))
        start++;
    while (end > start && is_ascii_space(field[end - 1]))
        end--;
    long long value = 0;
    for (int i = start; i < end; i++) {
        unsigned char c = field[i];
        if (c < '0' || c > '7')
            return -1;
        value = value * 8 + (c - '0');  /* at most 12 digits: 36 bits */
    }
    *out = value;
    return 0;
}

/* A text field: the bytes up to the first NUL, decoded as UTF-8 with surrogateescape
 * (converters.rootfs._text with open_tar's encoding and errors). */
static PyObject *
text_field(const unsigned char *field, int length)
{
    const unsigned char *nul = memchr(field, 0, (size_t)length);
    Py_ssize_t size = nul ? (Py_ssize_t)(nul - field) : length;
    return PyUnicode_DecodeUTF8((const char *)field, size, "surrogateescape");
}

PyDoc_STRVAR(decode_doc,
"decode(buf, /)\n--\n\n"
"Decode a 512-byte ustar header (bytes-like) in one pass.\n\n"
"Returns a 14-tuple (name, mode, uid, gid, size, mtime, chksum, type, linkname, uname,\n"
"gname, devmajor, devminor, prefix): text fields as str (the bytes before the first NUL,\n"
"UTF-8 with surrogateescape), numbers as int, type as 1 byte. Returns None for every\n"
"header it does not take: not 512 bytes, all zero, an old GNU sparse header, a number\n"
"that is not plain octal, or a checksum that does not match the unsigned sum.");

static PyObject *
decode(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    const unsigned char *buf = view.buf;
    long long numbers[8];
    if (view.len != BLOCK || buf[156] == 'S')
        goto decline;
    int zero = 1;
    for (int i = 0; i < BLOCK; i++) {
        if (buf[i]) {
            zero = 0;
            break;
        }
    }
    if (zero)
        goto decline;
    for (int i = 0; i < 8; i++) {
        if (parse_octal(buf + NUMBER_FIELDS[i][0], NUMBER_FIELDS[i][1], &numbers[i]) < 0)
            goto decline;
    }
    long long sum = 256;  /* the checksum field counted as 8 spaces */
    for (int i = 0; i < BLOCK; i++) {
        if (i < 148 || i >= 156)
            sum += buf[i];
    }
    if (numbers[5] != sum)
        goto decline;
    result = Py_BuildValue("(NLLLLLLy#NNNLLN)",
                           text_field(buf, 100), numbers[0], numbers[1], numbers[2], numbers[3],
                           numbers[4], numbers[5], (const char *)buf + 156, (Py_ssize_t)1,
                           text_field(buf + 157, 100), text_field(buf + 265, 32),
                           text_field(buf + 297, 32), numbers[6], numbers[7],
                           text_field(buf + 345, 155));
    PyBuffer_Release(&view);
    return result;
decline:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* An int argument in [0, limit), or -1 when it is not an int or out of range
 * (with no exception set). exact: refuse int subclasses (bool), as "type(x) is int". */
static long long
bounded_int(PyObject *value, long long limit, int exact)
{
    if (exact ? !PyLong_CheckExact(value) : !PyLong_Check(value))
        return -1;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (overflow || n < 0 || n >= limit)
        return -1;
    return n;
}

/* Copy an ASCII str of at most `length` characters into the field; -1 if it is not one. */
static int
put_ascii(unsigned char *field, PyObject *text, Py_ssize_t length)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text) || PyUnicode_GET_LENGTH(text) > length)
        return -1;
    memcpy(field, PyUnicode_1BYTE_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
    return 0;
}

/* `digits` octal digits of value, zero-padded, then a NUL. */
static void
put_octal(unsigned char *field, int digits, unsigned long long value)
{
    field[digits] = 0;
    for (int i = digits - 1; i >= 0; i--) {
        field[i] = (unsigned char)('0' + (value & 7));
        value >>= 3;
    }
}

#define MAX_ID (1LL << 21)    /* 8 ** 7: 7 octal digits and a NUL */
#define MAX_SIZE (1LL << 33)  /* 8 ** 11: 11 octal digits and a NUL */

PyDoc_STRVAR(encode_doc,
"encode(name, mode, uid, gid, size, mtime, type, linkname, uname, gname, devmajor, devminor, /)\n--\n\n"
"The 512-byte ustar header tarfile writes (PAX_FORMAT, UTF-8) for an entry that needs no\n"
"pax record, as bytes; None when it would need one (a name or link over 100 characters\n"
"or not ASCII, an owner name over 32, an id, size or mtime out of the octal fields'\n"
"range, an mtime that is not exactly an int) or an argument is not of the expected type.\n"
"name must already end in '/' for a directory; mode is masked to 0o7777; devmajor and\n"
"devminor are written only for the types '3' and '4' (character and block devices).");

static PyObject *
encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "encode() takes exactly 12 arguments");
        return NULL;
    }
    unsigned char head[BLOCK];
    memset(head, 0, BLOCK);
    PyObject *kind = args[6];
    if (!PyBytes_Check(kind) || PyBytes_GET_SIZE(kind) != 1)
        Py_RETURN_NONE;
    unsigned char type = (unsigned char)PyBytes_AS_STRING(kind)[0];
    if (!PyLong_Check(args[1]))
        Py_RETURN_NONE;
    /* The low bits of any int, negative or huge, as Python's "mode & 0o7777" takes them. */
    unsigned long long mode = PyLong_AsUnsignedLongLongMask(args[1]);
    if (mode == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    long long uid = bounded_int(args[2], MAX_ID, 0);
    long long gid = bounded_int(args[3], MAX_ID, 0);
    long long size = bounded_int(args[4], MAX_SIZE, 0);
    long long mtime = bounded_int(args[5], MAX_SIZE, 1);
    if (uid < 0 || gid < 0 || size < 0 || mtime < 0)
        Py_RETURN_NONE;
    if (put_ascii(head, args[0], 100) < 0 || put_ascii(head + 157, args[7], 100) < 0
            || put_ascii(head + 265, args[8], 32) < 0 || put_ascii(head + 297, args[9], 32) < 0)
        Py_RETURN_NONE;
    if (type == '3' || type == '4') {
        long long major = bounded_int(args[10], MAX_ID, 0);
        long long minor = bounded_int(args[11], MAX_ID, 0);
        if (major < 0 || minor < 0)
            Py_RETURN_NONE;
        put_octal(head + 329, 7, (unsigned long long)major);
        put_octal(head + 337, 7, (unsigned long long)minor);
    }
    put_octal(head + 100, 7, mode & 07777);
    put_octal(head + 108, 7, (unsigned long long)uid);
    put_octal(head + 116, 7, (unsigned long long)gid);
    put_octal(head + 124, 11, (unsigned long long)size);
    put_octal(head + 136, 11, (unsigned long long)mtime);
    memset(head + 148, ' ', 8);
    head[156] = type;
    memcpy(head + 257, "ustar\0" "00", 8);
    unsigned long sum = 0;
    for (int i = 0; i < BLOCK; i++)
        sum += head[i];
    put_octal(head + 148, 6, sum);  /* six digits and a NUL; byte 155 stays a space */
    return PyBytes_FromStringAndSize((const char *)head, BLOCK);
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)decode, METH_O, decode_doc},
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL, encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "converters._tarheader",
    .m_doc = "The common ustar header decoded and encoded in C: an optional accelerator "
             "for converters.rootfs and converters.tarwriter, which keep the Python definition.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__tarheader(void)
{
    return PyModuleDef_Init(&module);
}
