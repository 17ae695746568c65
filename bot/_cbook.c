/*
 * bot._cbook: one side of an L2 order book in C (the compiled twin of bot.book.PyBookSide).
 *
 * The side stores *signed* prices ("keys": price for bids, -price for asks) in ascending order
 * in a plain array of doubles, with the quantities in a parallel array, so the best level is
 * the last element on both sides (see bot/book.py). Every method has exactly the semantics of
 * the pure-Python reference PyBookSide; tests/test_cbook.py checks the two against each other
 * on random operation sequences and on real captures.
 *
 * update() applies levels in order (absolute quantities, 0 removes). A batch whose keys are
 * strictly monotone (Binance sends each side sorted) is merged in place: each level is found by
 * a galloping search from the one before, and the stored levels between them move as whole
 * runs, by the number of levels inserted less those deleted before them. A diff costs its own
 * size times a logarithm, plus the bytes that really move, never a pass over the whole book
 * (a book holds thousands of levels; a diff of 40 far levels used to copy all of them).
 *
 * Also here: the strict readers of Binance level arrays and depth diffs (the hot path's parser
 * helpers, bot/native.py has their references), StreamKind and DepthRoute, the Binance
 * parser's reading of a frame's stream and its path for an in-sync diff from raw frame to
 * event, and BookPart, which books one part of a split diff together with the simulated
 * venue's queue pass over it (see their sections).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The level readers take the string's kind (1, 2 or 4 bytes per character) as a parameter
 * and are always inlined; their callers branch once on the kind, so for ASCII text (what
 * venues send) every character read is a plain byte load, with no per-character switch.
 */
#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif
#define BY_KIND(kind, call) ((kind) == PyUnicode_1BYTE_KIND ? call(PyUnicode_1BYTE_KIND) : call(kind))

typedef struct {
    PyObject_HEAD
    double sign;
    double *keys; /* the n stored levels: mem_keys + lo (see "Layout" below) */
    double *qty;
    Py_ssize_t n;
    Py_ssize_t cap; /* entries allocated at mem_keys and mem_qty */
    Py_ssize_t lo;  /* free entries below keys[0] */
    double *mem_keys;
    double *mem_qty;
    /* scratch for merges and batch reads */
    double *tmp_keys;
    double *tmp_qty;
    Py_ssize_t tmp_cap;
    /* scratch for merges: where each batch level goes and what it does (see merge_ascending) */
    Py_ssize_t *tmp_pos;
    Py_ssize_t pos_cap;
} BookSide;

/* ------------------------------------------------------------------ memory */

/* Grow a pair of parallel arrays (keys, quantities) to hold at least ``need`` entries, at
 * least ``first`` when they are new. */
static int
grow_pair(double **keys, double **qty, Py_ssize_t *cap, Py_ssize_t need, Py_ssize_t first)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t size = *cap ? *cap : first;
    while (size < need)
        size *= 2;
    double *k = PyMem_Realloc(*keys, (size_t)size * sizeof(double));
    if (k == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *keys = k;
    double *q = PyMem_Realloc(*qty, (size_t)size * sizeof(double));
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *qty = q;
    *cap = size;
    return 0;
}

/*
 * Layout. The stored levels sit inside a larger allocation with free entries on both sides:
 * an insertion or deletion may then move the levels below it instead of those above it,
 * whichever are fewer. The best level is the last one, so a diff deep in the book (a new far
 * level, say) used to move every level between it and the touch; now it moves the few far
 * levels below it. keys/qty point at the first stored level, so readers see plain arrays.
 *
 * Venue books run to thousands of levels a side (Binance USD-M BTCUSDT: about 4,400), and a
 * book grows level by level as diffs add them: starting a side at this many (128 KB) spares
 * the updates that would cross each doubling below it a copy of the whole side.
 */
#define BOOK_FIRST_CAP 8192

/*
 * Make room for ``front`` free entries below keys[0] and ``total`` entries from keys[0] on
 * (total >= n). When that does not fit, the levels are laid out again in the middle of the
 * allocation, a larger one if they would fill more than three quarters of it: one copy of
 * the side, after which each end has at least an eighth of the allocation free.
 */
static int
reserve(BookSide *self, Py_ssize_t front, Py_ssize_t total)
{
    if (front <= self->lo && self->lo + total <= self->cap)
        return 0;
    Py_ssize_t need = front + total;
    Py_ssize_t size = self->cap ? self->cap : BOOK_FIRST_CAP;
    while (need > size - size / 4)
        size *= 2;
    Py_ssize_t lo = front + (size - need) / 2;
    Py_ssize_t n = self->n;
    if (size == self->cap) {
        /* Same allocation: move the levels to the middle (the ranges may overlap). */
        memmove(self->mem_keys + lo, self->keys, (size_t)n * sizeof(double));
        memmove(self->mem_qty + lo, self->qty, (size_t)n * sizeof(double));
    }
    else {
        double *k = PyMem_Malloc((size_t)size * sizeof(double));
        double *q = PyMem_Malloc((size_t)size * sizeof(double));
        if (k == NULL || q == NULL) {
            PyMem_Free(k);
            PyMem_Free(q);
            PyErr_NoMemory();
            return -1;
        }
        if (n) {
            memcpy(k + lo, self->keys, (size_t)n * sizeof(double));
            memcpy(q + lo, self->qty, (size_t)n * sizeof(double));
        }
        PyMem_Free(self->mem_keys);
        PyMem_Free(self->mem_qty);
        self->mem_keys = k;
        self->mem_qty = q;
        self->cap = size;
    }
    self->lo = lo;
    self->keys = self->mem_keys + lo;
    self->qty = self->mem_qty + lo;
    return 0;
}

/* Move the first stored level by ``by`` entries (negative: down); room must be reserved. */
static inline void
shift_base(BookSide *self, Py_ssize_t by)
{
    self->lo += by;
    self->keys += by;
    self->qty += by;
}

static int
grow_tmp(BookSide *self, Py_ssize_t need)
{
    return grow_pair(&self->tmp_keys, &self->tmp_qty, &self->tmp_cap, need, 64);
}

/* Read a number the way float() would: exact floats directly, anything else converted. */
static int
as_double(PyObject *obj, double *out)
{
    if (PyFloat_CheckExact(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    *out = PyFloat_AsDouble(obj);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* First index whose key is >= key (bisect_left). */
static Py_ssize_t
lower_bound(const double *keys, Py_ssize_t n, double key)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ------------------------------------------------------------------ LevelRun */

/*
 * LevelRun: an immutable run of book levels held as two arrays of doubles, the prices and
 * their quantities. It is a read-only sequence of (price, qty) tuples (made on access), so it
 * can stand wherever levels are read; BookSide.update and level_qty read it straight from the
 * arrays. The settle round of a sweep hands hundreds of levels to the book through one, and a
 * split diff its near levels: no Python object per level. Equal to a LevelRun or a tuple with
 * the same levels (and hashed as that tuple), so an event means the same whichever it holds.
 */
typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    double *price; /* n prices, then n quantities, in one block */
    double *qty;
} LevelRun;

static PyTypeObject LevelRunType;

/* A run of ``n`` levels copied from ``price``/``qty`` (reversed when ``reversed``). */
static PyObject *
run_from_arrays(const double *price, const double *qty, Py_ssize_t n, int reversed)
{
    LevelRun *run = PyObject_New(LevelRun, &LevelRunType);
    if (run == NULL)
        return NULL;
    run->n = 0;
    run->price = PyMem_Malloc((size_t)(n ? 2 * n : 1) * sizeof(double));
    if (run->price == NULL) {
        Py_DECREF(run);
        return PyErr_NoMemory();
    }
    run->qty = run->price + n;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t at = reversed ? n - 1 - k : k;
        run->price[k] = price[at];
        run->qty[k] = qty[at];
    }
    run->n = n;
    return (PyObject *)run;
}

static int read_level(PyObject *level, double *price, double *qty);

static PyObject *
LevelRun_new(PyTypeObject *Py_UNUSED(type), PyObject *args, PyObject *kwds)
{
    PyObject *levels;
    static char *kwlist[] = {"levels", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &levels))
        return NULL;
    PyObject *fast = PySequence_Fast(levels, "LevelRun takes a sequence of (price, qty)");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    double *block = PyMem_Malloc((size_t)(n ? 2 * n : 1) * sizeof(double));
    if (block == NULL) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    PyObject *run = NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (read_level(PySequence_Fast_GET_ITEM(fast, k), block + k, block + n + k) < 0)
            goto done;
    }
    run = run_from_arrays(block, block + n, n, 0);
done:
    PyMem_Free(block);
    Py_DECREF(fast);
    return run;
}

static void
LevelRun_dealloc(LevelRun *self)
{
    PyMem_Free(self->price);
    PyObject_Free(self);
}

static Py_ssize_t
LevelRun_len(LevelRun *self)
{
    return self->n;
}

static PyObject *
run_level(LevelRun *self, Py_ssize_t k)
{
    return Py_BuildValue("(dd)", self->price[k], self->qty[k]);
}

static PyObject *
LevelRun_item(LevelRun *self, Py_ssize_t k)
{
    if (k < 0 || k >= self->n) {
        PyErr_SetString(PyExc_IndexError, "LevelRun index out of range");
        return NULL;
    }
    return run_level(self, k);
}

/* run[k] (negative from the end) or run[a:b:c] (a tuple of levels). */
static PyObject *
LevelRun_subscript(LevelRun *self, PyObject *key)
{
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        Py_ssize_t count = PySlice_AdjustIndices(self->n, &start, &stop, step);
        PyObject *out = PyTuple_New(count);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t k = 0, at = start; k < count; k++, at += step) {
            PyObject *level = run_level(self, at);
            if (level == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyTuple_SET_ITEM(out, k, level);
        }
        return out;
    }
    Py_ssize_t k = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    return LevelRun_item(self, k < 0 ? k + self->n : k);
}

/* A tuple of the levels (for repr and hash, which are rare). */
static PyObject *
run_tuple(LevelRun *self)
{
    PyObject *all = PySlice_New(NULL, NULL, NULL);
    if (all == NULL)
        return NULL;
    PyObject *out = LevelRun_subscript(self, all);
    Py_DECREF(all);
    return out;
}

static PyObject *
LevelRun_repr(LevelRun *self)
{
    PyObject *levels = run_tuple(self);
    if (levels == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromFormat("LevelRun(%R)", levels);
    Py_DECREF(levels);
    return out;
}

static Py_hash_t
LevelRun_hash(LevelRun *self)
{
    PyObject *levels = run_tuple(self);
    if (levels == NULL)
        return -1;
    Py_hash_t hash = PyObject_Hash(levels);
    Py_DECREF(levels);
    return hash;
}

static PyObject *
LevelRun_richcompare(PyObject *a, PyObject *b, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if (PyTuple_Check(b)) {
        /* the levels a run stands for: equal to the tuple of them (and hashed alike) */
        PyObject *levels = run_tuple((LevelRun *)a);
        if (levels == NULL)
            return NULL;
        PyObject *out = PyObject_RichCompare(levels, b, op);
        Py_DECREF(levels);
        return out;
    }
    if (!Py_IS_TYPE(b, &LevelRunType))
        Py_RETURN_NOTIMPLEMENTED;
    LevelRun *x = (LevelRun *)a, *y = (LevelRun *)b;
    int equal = x->n == y->n;
    for (Py_ssize_t k = 0; equal && k < x->n; k++)
        equal = x->price[k] == y->price[k] && x->qty[k] == y->qty[k];
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyObject *
LevelRun_reduce(LevelRun *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *levels = run_tuple(self);
    if (levels == NULL)
        return NULL;
    return Py_BuildValue("(O(N))", (PyObject *)&LevelRunType, levels);
}

static PyMethodDef LevelRun_methods[] = {
    {"__reduce__", (PyCFunction)LevelRun_reduce, METH_NOARGS, "Pickle as the levels."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods LevelRun_as_sequence = {
    .sq_length = (lenfunc)LevelRun_len,
    .sq_item = (ssizeargfunc)LevelRun_item,
};

static PyMappingMethods LevelRun_as_mapping = {
    .mp_length = (lenfunc)LevelRun_len,
    .mp_subscript = (binaryfunc)LevelRun_subscript,
};

static PyTypeObject LevelRunType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.LevelRun",
    .tp_doc = PyDoc_STR("LevelRun(levels): an immutable run of (price, qty) book levels."),
    .tp_basicsize = sizeof(LevelRun),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_SEQUENCE,
    .tp_new = LevelRun_new,
    .tp_dealloc = (destructor)LevelRun_dealloc,
    .tp_repr = (reprfunc)LevelRun_repr,
    .tp_hash = (hashfunc)LevelRun_hash,
    .tp_richcompare = LevelRun_richcompare,
    .tp_methods = LevelRun_methods,
    .tp_as_sequence = &LevelRun_as_sequence,
    .tp_as_mapping = &LevelRun_as_mapping,
};

/* ------------------------------------------------------------------ reading levels */

/* Read one level (a 2-sequence of numbers) into *price, *qty. */
static int
read_level(PyObject *level, double *price, double *qty)
{
    PyObject *p, *q;
    PyObject *fast = NULL;
    if (PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2) {
        p = PyTuple_GET_ITEM(level, 0);
        q = PyTuple_GET_ITEM(level, 1);
    }
    else {
        fast = PySequence_Fast(level, "a book level must be a (price, qty) pair");
        if (fast == NULL)
            return -1;
        if (PySequence_Fast_GET_SIZE(fast) != 2) {
            Py_ssize_t size = PySequence_Fast_GET_SIZE(fast);
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError,
                         "a book level must be a (price, qty) pair, got %zd values", size);
            return -1;
        }
        p = PySequence_Fast_GET_ITEM(fast, 0);
        q = PySequence_Fast_GET_ITEM(fast, 1);
    }
    int status = (as_double(p, price) < 0 || as_double(q, qty) < 0) ? -1 : 0;
    Py_XDECREF(fast);
    return status;
}

/* Read a sequence of levels into the scratch arrays as (key, qty); returns the count or -1. */
static Py_ssize_t
read_levels(BookSide *self, PyObject *levels)
{
    if (Py_IS_TYPE(levels, &LevelRunType)) {
        LevelRun *run = (LevelRun *)levels;
        if (grow_tmp(self, run->n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < run->n; i++) {
            self->tmp_keys[i] = self->sign * run->price[i];
            self->tmp_qty[i] = run->qty[i];
        }
        return run->n;
    }
    PyObject *fast = PySequence_Fast(levels, "book levels must be a sequence of (price, qty)");
    if (fast == NULL)
        return -1;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    if (grow_tmp(self, m) < 0) {
        Py_DECREF(fast);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    double sign = self->sign;
    for (Py_ssize_t i = 0; i < m; i++) {
        double price, qty;
        if (read_level(items[i], &price, &qty) < 0) {
            Py_DECREF(fast);
            return -1;
        }
        self->tmp_keys[i] = sign * price;
        self->tmp_qty[i] = qty;
    }
    Py_DECREF(fast);
    return m;
}

/* ------------------------------------------------------------------ mutation */

/* Set the absolute quantity of one key; 0 removes it (absent is fine). */
static int
set_one(BookSide *self, double key, double qty)
{
    Py_ssize_t n = self->n;
    Py_ssize_t i = lower_bound(self->keys, n, key);
    int found = i < n && self->keys[i] == key;
    if (qty == 0.0) {
        if (found) {
            if (i < n - 1 - i) {
                /* fewer levels below: move them up one */
                memmove(self->keys + 1, self->keys, (size_t)i * sizeof(double));
                memmove(self->qty + 1, self->qty, (size_t)i * sizeof(double));
                shift_base(self, 1);
            }
            else {
                memmove(self->keys + i, self->keys + i + 1, (size_t)(n - i - 1) * sizeof(double));
                memmove(self->qty + i, self->qty + i + 1, (size_t)(n - i - 1) * sizeof(double));
            }
            self->n = n - 1;
        }
        return 0;
    }
    if (found) {
        self->qty[i] = qty;
        return 0;
    }
    if (i < n - i) {
        /* fewer levels below: move them down one */
        if (reserve(self, 1, n) < 0)
            return -1;
        memmove(self->keys - 1, self->keys, (size_t)i * sizeof(double));
        memmove(self->qty - 1, self->qty, (size_t)i * sizeof(double));
        shift_base(self, -1);
    }
    else {
        if (reserve(self, 0, n + 1) < 0)
            return -1;
        memmove(self->keys + i + 1, self->keys + i, (size_t)(n - i) * sizeof(double));
        memmove(self->qty + i + 1, self->qty + i, (size_t)(n - i) * sizeof(double));
    }
    self->keys[i] = key;
    self->qty[i] = qty;
    self->n = n + 1;
    return 0;
}

/*
 * The first index in [lo, n] whose key is >= key, given that every key below lo is < key:
 * probes lo, lo + 1, lo + 3, lo + 7, ... then bisects the last gap. O(log d) for an answer d
 * places on, so a sorted batch is located in one forward sweep of searches.
 */
static Py_ssize_t
gallop(const double *keys, Py_ssize_t lo, Py_ssize_t n, double key)
{
    Py_ssize_t hi = lo, step = 1;
    while (hi < n && keys[hi] < key) {
        lo = hi + 1;
        hi += step;
        step <<= 1;
    }
    if (hi > n)
        hi = n;
    return lo + lower_bound(keys + lo, hi - lo, key);
}

/* merge_ascending's record of one batch level: its position in the old array and two flags. */
#define POS_FOUND 2 /* the key is stored at that position */
#define POS_LIVE 1  /* the level has a quantity (not a deletion) */

/* A level's effect on the count of the levels after it: +1 inserted, -1 deleted, else 0. */
static inline Py_ssize_t
pos_delta(Py_ssize_t rec)
{
    int found = (rec & POS_FOUND) != 0, live = (rec & POS_LIVE) != 0;
    return found ? (live ? 0 : -1) : (live ? 1 : 0);
}

/* Move the stored levels [a, b) by ``shift`` places (both arrays). */
static inline void
move_run(BookSide *self, Py_ssize_t a, Py_ssize_t b, Py_ssize_t shift)
{
    if (b > a && shift != 0) {
        memmove(self->keys + a + shift, self->keys + a, (size_t)(b - a) * sizeof(double));
        memmove(self->qty + a + shift, self->qty + a, (size_t)(b - a) * sizeof(double));
    }
}

/*
 * Merge a batch (as merge_ascending) in place, wherever its levels fall in the book.
 *
 * First each batch key is located (gallop from the previous one) and the net growth counted.
 * The stored levels then form runs between the batch positions; run k sits after the levels
 * inserted less those deleted before it, S_k of them. Relative to the first stored level, run
 * k moves by S_k - D where D is how far the first level itself moves down (see "Layout"):
 * D is chosen as the S_k shared by the most stored levels, so those stay where they are.
 * Runs that move down are moved first, in increasing order, then runs that move up, in
 * decreasing order: the final layout keeps the order and its runs are disjoint, so no move
 * overwrites a run not yet moved. Last, the batch levels with a quantity are written at their
 * final places.
 */
static int
merge_gallop(BookSide *self, const double *bk, const double *bq, Py_ssize_t m)
{
    /* scratch: m records, then 2m + 1 counts of stored levels by shift (-m..m) */
    Py_ssize_t scratch = 3 * m + 1;
    if (scratch > self->pos_cap) {
        Py_ssize_t size = self->pos_cap ? self->pos_cap : 64;
        while (size < scratch)
            size *= 2;
        Py_ssize_t *pos = PyMem_Realloc(self->tmp_pos, (size_t)size * sizeof(Py_ssize_t));
        if (pos == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->tmp_pos = pos;
        self->pos_cap = size;
    }
    Py_ssize_t *rec = self->tmp_pos, *by_shift = self->tmp_pos + m + m; /* by_shift[-m..m] */
    Py_ssize_t n = self->n, grow = 0, at = 0, low = 0, high = 0; /* low..high: the S_k */
    const double *keys = self->keys;
    for (Py_ssize_t j = 0; j < m; j++) {
        at = gallop(keys, at, n, bk[j]);
        Py_ssize_t r = at * 4;
        if (at < n && keys[at] == bk[j])
            r |= POS_FOUND;
        if (bq[j] != 0.0)
            r |= POS_LIVE;
        rec[j] = r;
        grow += pos_delta(r);
        low = grow < low ? grow : low;
        high = grow > high ? grow : high;
    }
    /* Run k (k = 0..m) is [start of k, rec[k] / 4), the last one ending at n. */
#define RUN_START(k) ((k) == 0 ? 0 : rec[(k) - 1] / 4 + ((rec[(k) - 1] & POS_FOUND) != 0))
#define RUN_END(k) ((k) == m ? n : rec[(k)] / 4)
    for (Py_ssize_t s = low; s <= high; s++)
        by_shift[s] = 0;
    Py_ssize_t shift = 0, down = 0, most = -1;
    for (Py_ssize_t k = 0; k <= m; k++) {
        if (k > 0)
            shift += pos_delta(rec[k - 1]);
        by_shift[shift] += RUN_END(k) - RUN_START(k);
    }
    for (Py_ssize_t s = low; s <= high; s++) {
        if (by_shift[s] > most) {
            most = by_shift[s];
            down = s;
        }
    }
    /* The first level moves down by ``down`` (up if negative); the top grows by grow - down. */
    if (reserve(self, down > 0 ? down : 0, grow - down > 0 ? n + grow - down : n) < 0)
        return -1;
    shift = -down;
    for (Py_ssize_t k = 0; k <= m; k++) {
        if (k > 0)
            shift += pos_delta(rec[k - 1]);
        if (shift < 0)
            move_run(self, RUN_START(k), RUN_END(k), shift);
    }
    /* shift is now grow - down; walk back down */
    for (Py_ssize_t k = m; k >= 0; k--) {
        if (shift > 0)
            move_run(self, RUN_START(k), RUN_END(k), shift);
        if (k > 0)
            shift -= pos_delta(rec[k - 1]);
    }
#undef RUN_START
#undef RUN_END
    shift_base(self, -down);
    shift = 0;
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_ssize_t r = rec[j];
        if (r & POS_LIVE) {
            self->keys[r / 4 + shift] = bk[j];
            self->qty[r / 4 + shift] = bq[j];
        }
        shift += pos_delta(r);
    }
    self->n = n + grow;
    return 0;
}

/*
 * Merge a batch (as merge_ascending) by one pass over the suffix from ``start``, the first
 * stored level at or above the batch's lowest key: the suffix is copied aside and merged
 * back. Cheapest when the suffix is not much longer than the batch (a diff at the touch).
 */
static int
merge_linear(BookSide *self, const double *bk, const double *bq, Py_ssize_t m,
             Py_ssize_t start)
{
    Py_ssize_t n = self->n;
    Py_ssize_t tail = n - start;
    /* Copy the old suffix aside, then write the merged suffix back from start. */
    double *old_k = PyMem_Malloc((size_t)(tail ? tail : 1) * sizeof(double));
    double *old_q = PyMem_Malloc((size_t)(tail ? tail : 1) * sizeof(double));
    if (old_k == NULL || old_q == NULL) {
        PyMem_Free(old_k);
        PyMem_Free(old_q);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(old_k, self->keys + start, (size_t)tail * sizeof(double));
    memcpy(old_q, self->qty + start, (size_t)tail * sizeof(double));
    if (reserve(self, 0, n + m) < 0) {
        PyMem_Free(old_k);
        PyMem_Free(old_q);
        return -1;
    }
    double *keys = self->keys, *qty = self->qty;
    Py_ssize_t i = 0, j = 0, out = start;
    while (i < tail && j < m) {
        double a = old_k[i], b = bk[j];
        if (a < b) {
            keys[out] = a;
            qty[out++] = old_q[i++];
        }
        else if (b < a) {
            if (bq[j] != 0.0) {
                keys[out] = b;
                qty[out++] = bq[j];
            }
            j++;
        }
        else {
            if (bq[j] != 0.0) {
                keys[out] = b;
                qty[out++] = bq[j];
            }
            i++;
            j++;
        }
    }
    while (i < tail) {
        keys[out] = old_k[i];
        qty[out++] = old_q[i++];
    }
    while (j < m) {
        if (bq[j] != 0.0) {
            keys[out] = bk[j];
            qty[out++] = bq[j];
        }
        j++;
    }
    self->n = out;
    PyMem_Free(old_k);
    PyMem_Free(old_q);
    return 0;
}

/*
 * Merge an ascending, strictly increasing batch (bk, bq, m; in the scratch arrays or reversed
 * in place there) into the main arrays. A batch at the touch (the stored levels above its
 * lowest key are few) is merged by one linear pass; one that reaches deep into the book,
 * where thousands of levels lie above it, by galloping searches and run moves.
 */
static int
merge_ascending(BookSide *self, const double *bk, const double *bq, Py_ssize_t m)
{
    Py_ssize_t start = lower_bound(self->keys, self->n, bk[0]);
    if (self->n - start <= 8 * m + 64)
        return merge_linear(self, bk, bq, m, start);
    return merge_gallop(self, bk, bq, m);
}

static void
reverse(double *a, Py_ssize_t m)
{
    for (Py_ssize_t i = 0, j = m - 1; i < j; i++, j--) {
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static PyObject *
BookSide_update(BookSide *self, PyObject *levels)
{
    Py_ssize_t m = read_levels(self, levels);
    if (m < 0)
        return NULL;
    double *bk = self->tmp_keys, *bq = self->tmp_qty;
    if (m >= 4) {
        int ascending = 1, descending = 1;
        for (Py_ssize_t i = 1; i < m && (ascending || descending); i++) {
            /* NaN compares false both ways: such a batch goes level by level. */
            if (!(bk[i - 1] < bk[i]))
                ascending = 0;
            if (!(bk[i - 1] > bk[i]))
                descending = 0;
        }
        if (descending) {
            reverse(bk, m);
            reverse(bq, m);
            ascending = 1;
        }
        if (ascending) {
            if (merge_ascending(self, bk, bq, m) < 0)
                return NULL;
            Py_RETURN_NONE;
        }
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        if (set_one(self, bk[i], bq[i]) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* Sort helper for replace(): by key, then by position (so the last of equal keys wins). */
typedef struct {
    double key;
    double qty;
    Py_ssize_t pos;
} Entry;

static int
entry_cmp(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    if (x->key < y->key)
        return -1;
    if (x->key > y->key)
        return 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static PyObject *
BookSide_replace(BookSide *self, PyObject *levels)
{
    Py_ssize_t m = read_levels(self, levels);
    if (m < 0)
        return NULL;
    /* A venue's snapshot lists each side sorted (Binance: bids descending, asks ascending),
     * so strictly monotone keys are copied in order, no sort: a snapshot is the first
     * frame quoted on and each resync's. Equal keys or NaN are sorted first. */
    const double *tk = self->tmp_keys, *tq = self->tmp_qty;
    int ascending = 1, descending = 1;
    for (Py_ssize_t i = 1; i < m && (ascending || descending); i++) {
        if (!(tk[i - 1] < tk[i]))
            ascending = 0;
        if (!(tk[i - 1] > tk[i]))
            descending = 0;
    }
    Entry *entries = NULL;
    if (!ascending && !descending) {
        entries = PyMem_Malloc((size_t)m * sizeof(Entry));
        if (entries == NULL)
            return PyErr_NoMemory();
        for (Py_ssize_t i = 0; i < m; i++) {
            entries[i].key = tk[i];
            entries[i].qty = tq[i];
            entries[i].pos = i;
        }
        qsort(entries, (size_t)m, sizeof(Entry), entry_cmp);
    }
    Py_ssize_t old_n = self->n;
    self->n = 0; /* none of the old levels is kept: no copy if room must be made */
    if (reserve(self, 0, m) < 0) {
        self->n = old_n;
        PyMem_Free(entries);
        return NULL;
    }
    Py_ssize_t out = 0;
    for (Py_ssize_t k = 0; k < m; k++) {
        double key, qty;
        if (entries == NULL) {
            Py_ssize_t at = ascending ? k : m - 1 - k;
            key = tk[at];
            qty = tq[at];
        }
        else {
            /* The last of a run of equal keys holds the quantity that stands. */
            if (k + 1 < m && entries[k + 1].key == entries[k].key)
                continue;
            key = entries[k].key;
            qty = entries[k].qty;
        }
        if (qty == 0.0)
            continue;
        self->keys[out] = key;
        self->qty[out++] = qty;
    }
    self->n = out;
    PyMem_Free(entries);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ queries */

static PyObject *
BookSide_best(BookSide *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(self->n ? self->keys[self->n - 1] : Py_NAN);
}

static PyObject *
BookSide_best_qty(BookSide *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(self->n ? self->qty[self->n - 1] : 0.0);
}

static PyObject *
BookSide_get(BookSide *self, PyObject *arg)
{
    double key = PyFloat_AsDouble(arg);
    if (key == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t i = lower_bound(self->keys, self->n, key);
    return PyFloat_FromDouble(i < self->n && self->keys[i] == key ? self->qty[i] : 0.0);
}

static PyObject *
BookSide_qty_from(BookSide *self, PyObject *arg)
{
    double key = PyFloat_AsDouble(arg);
    if (key == -1.0 && PyErr_Occurred())
        return NULL;
    double total = 0.0;
    for (Py_ssize_t i = lower_bound(self->keys, self->n, key); i < self->n; i++)
        total += self->qty[i];
    return PyFloat_FromDouble(total);
}

static PyObject *
BookSide_top(BookSide *self, PyObject *arg)
{
    Py_ssize_t count = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 0)
        count = 0;
    if (count > self->n)
        count = self->n;
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t at = self->n - 1 - i;
        PyObject *level = Py_BuildValue("(dd)", self->sign * self->keys[at], self->qty[at]);
        if (level == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, level);
    }
    return out;
}

static Py_ssize_t
BookSide_len(BookSide *self)
{
    return self->n;
}

/* ------------------------------------------------------------------ type plumbing */

static int
BookSide_init(BookSide *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sign", NULL};
    double sign;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d", kwlist, &sign))
        return -1;
    if (sign != 1.0 && sign != -1.0) {
        PyErr_Format(PyExc_ValueError, "sign must be 1.0 (bids) or -1.0 (asks)");
        return -1;
    }
    self->sign = sign;
    self->n = 0;
    return 0;
}

static void
BookSide_dealloc(BookSide *self)
{
    PyMem_Free(self->mem_keys);
    PyMem_Free(self->mem_qty);
    PyMem_Free(self->tmp_keys);
    PyMem_Free(self->tmp_qty);
    PyMem_Free(self->tmp_pos);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
BookSide_get_sign(BookSide *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->sign);
}

static PyObject *BookSide_settle_take(BookSide *self, PyObject *const *args,
                                      Py_ssize_t nargs);

static PyMethodDef BookSide_methods[] = {
    {"update", (PyCFunction)BookSide_update, METH_O,
     "Set absolute quantities, in order; a quantity of 0 removes the level."},
    {"replace", (PyCFunction)BookSide_replace, METH_O,
     "Replace every level; a repeated price keeps its last quantity, zeros are dropped."},
    {"best", (PyCFunction)BookSide_best, METH_NOARGS,
     "The best (last) signed price, or nan when the side is empty."},
    {"best_qty", (PyCFunction)BookSide_best_qty, METH_NOARGS,
     "The quantity at the best level, or 0.0 when the side is empty."},
    {"get", (PyCFunction)BookSide_get, METH_O,
     "The quantity at a signed price, or 0.0 when there is no level."},
    {"qty_from", (PyCFunction)BookSide_qty_from, METH_O,
     "The total quantity at signed prices >= the one given (ascending order sum)."},
    {"top", (PyCFunction)BookSide_top, METH_O,
     "Up to n levels as (price, qty), best first, prices unsigned."},
    {"settle_take", (PyCFunction)(void (*)(void))BookSide_settle_take, METH_FASTCALL,
     "The levels of a raw array, nearest first, to book before this side's best is final."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef BookSide_getset[] = {
    {"sign", (getter)BookSide_get_sign, NULL, "1.0 for bids, -1.0 for asks.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods BookSide_as_sequence = {
    .sq_length = (lenfunc)BookSide_len,
};

static PyTypeObject BookSideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.BookSide",
    .tp_doc = PyDoc_STR("One side of an L2 book: signed prices ascending, best last."),
    .tp_basicsize = sizeof(BookSide),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BookSide_init,
    .tp_dealloc = (destructor)BookSide_dealloc,
    .tp_methods = BookSide_methods,
    .tp_getset = BookSide_getset,
    .tp_as_sequence = &BookSide_as_sequence,
};

/* ------------------------------------------------------------------ level helpers */

/*
 * The index of the next "[" of text[1:] after ``i`` (from_end: before ``i``), or -1. Start
 * with ``i`` = len (from_end) or 0. Level arrays hold only decimal strings, so every "[" after
 * the outer one opens a level: this steps from level to level.
 */
static ALWAYS_INLINE Py_ssize_t
next_bracket_k(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, int from_end)
{
    if (kind == PyUnicode_1BYTE_KIND) {
        /* ASCII (what venues send): one vectorised scan instead of a byte loop */
        const Py_UCS1 *base = (const Py_UCS1 *)data;
        const Py_UCS1 *hit = NULL;
        if (from_end) {
            if (i <= 1)
                return -1;
#if defined(__GLIBC__)
            hit = memrchr(base + 1, '[', (size_t)(i - 1));
#else
            for (Py_ssize_t k = i - 1; k >= 1 && hit == NULL; k--)
                if (base[k] == '[')
                    hit = base + k;
#endif
        }
        else {
            if (i + 1 >= len)
                return -1;
            hit = memchr(base + i + 1, '[', (size_t)(len - i - 1));
        }
        return hit == NULL ? -1 : hit - base;
    }
    if (from_end) {
        for (i--; i >= 1; i--)
            if (PyUnicode_READ(kind, data, i) == '[')
                return i;
    }
    else {
        for (i++; i < len; i++)
            if (PyUnicode_READ(kind, data, i) == '[')
                return i;
    }
    return -1;
}

static Py_ssize_t
next_bracket(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, int from_end)
{
#define NEXT_BRACKET(k) next_bracket_k(k, data, len, i, from_end)
    return BY_KIND(kind, NEXT_BRACKET);
#undef NEXT_BRACKET
}

/*
 * nth_bracket(text, n, from_end): the index of the n-th "[" of text[1:] counted from the end
 * (from_end) or from the start, or -1 when there are fewer. The parser cuts level arrays
 * (which hold only decimal strings, so every "[" after the outer one opens a level) with it.
 */
static PyObject *
cbook_nth_bracket(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "nth_bracket(text, n, from_end) takes 3 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "nth_bracket: text must be str");
        return NULL;
    }
    Py_ssize_t n = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    int from_end = PyObject_IsTrue(args[2]);
    if (from_end < 0)
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (n < 1)
        return PyLong_FromSsize_t(-1);
    Py_ssize_t i = from_end ? len : 0;
    while (n-- > 0 && (i = next_bracket(kind, data, len, i, from_end)) >= 0)
        ;
    return PyLong_FromSsize_t(i);
}

/*
 * The price of the level whose "[" is at ``at``: the text between the first two quotes after
 * it (only whitespace may come before the first), when it is 1-63 ASCII digits with at most
 * one ".", and at least one digit. Returns 1 and sets *price, or 0 when it is not readable.
 */
static int
raw_price(int kind, const void *data, Py_ssize_t len, Py_ssize_t at, double *price)
{
    Py_ssize_t i = at + 1;
    Py_UCS4 c = 0;
    while (i < len && ((c = PyUnicode_READ(kind, data, i)) == ' ' || c == '\t' || c == '\r'
                       || c == '\n'))
        i++;
    if (i >= len || c != '"')
        return 0;
    char buf[64];
    int n = 0, dots = 0;
    for (i++; i < len && (c = PyUnicode_READ(kind, data, i)) != '"'; i++) {
        if (c == '.')
            dots++;
        else if (c < '0' || c > '9')
            return 0;
        if (n == 63 || dots > 1)
            return 0;
        buf[n++] = (char)c;
    }
    if (i >= len || n == dots)
        return 0;
    buf[n] = '\0';
    double value = PyOS_string_to_double(buf, NULL, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *price = value;
    return 1;
}

/*
 * count_through(text, bound, from_end, above): how many levels of a raw level array, from its
 * end (from_end) or its start, have a price at or above ``bound`` (above) or at or below it,
 * stopping at the first that has not. A level whose price is not readable counts and stops
 * the walk, so decoding the levels counted raises on it.
 */
static PyObject *
cbook_count_through(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "count_through(text, bound, from_end, above) takes 4 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "count_through: text must be str");
        return NULL;
    }
    double bound;
    if (as_double(args[1], &bound) < 0)
        return NULL;
    int from_end = PyObject_IsTrue(args[2]);
    if (from_end < 0)
        return NULL;
    int above = PyObject_IsTrue(args[3]);
    if (above < 0)
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t count = 0;
    Py_ssize_t i = from_end ? len : 0;
    while ((i = next_bracket(kind, data, len, i, from_end)) >= 0) {
        count++;
        double price;
        if (!raw_price(kind, data, len, i, &price))
            break;
        if (!(above ? price >= bound : price <= bound)) {
            count--;
            break;
        }
    }
    return PyLong_FromSsize_t(count);
}

/*
 * level_qty(levels, price): the quantity of the last level at ``price`` in a sequence of
 * (price, qty) pairs (what dict(levels).get(price) gives), or None when there is none.
 */
static PyObject *
cbook_level_qty(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "level_qty(levels, price) takes 2 arguments");
        return NULL;
    }
    double price;
    if (as_double(args[1], &price) < 0)
        return NULL;
    if (Py_IS_TYPE(args[0], &LevelRunType)) {
        LevelRun *run = (LevelRun *)args[0];
        for (Py_ssize_t k = run->n - 1; k >= 0; k--)
            if (run->price[k] == price)
                return PyFloat_FromDouble(run->qty[k]);
        Py_RETURN_NONE;
    }
    PyObject *fast = PySequence_Fast(args[0], "levels must be a sequence of (price, qty)");
    if (fast == NULL)
        return NULL;
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = PySequence_Fast_GET_SIZE(fast) - 1; i >= 0; i--) {
        PyObject *level = items[i];
        PyObject *p, *q;
        if (PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2) {
            p = PyTuple_GET_ITEM(level, 0);
            q = PyTuple_GET_ITEM(level, 1);
        }
        else {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "level_qty: a level must be a (price, qty) tuple");
            return NULL;
        }
        double at;
        if (as_double(p, &at) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        if (at == price) {
            Py_INCREF(q);
            Py_DECREF(fast);
            return q;
        }
    }
    Py_DECREF(fast);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ level arrays
 *
 * Strict readers of a Binance level array: ``[["61800.20","2.909"],["61800.10","0.696"]]``.
 * A level is "[" ws price ws "," ws qty ws "]" (ws: JSON whitespace), each value a JSON number
 * of at most 63 characters, quoted (as Binance sends them) or bare; a price must be finite
 * and > 0, a quantity finite and >= 0 (-0 reads as 0). This is what msgspec's lax float decoding accepts once the parser's
 * bounds apply, minus escapes and numbers longer than 63 characters, which Binance never
 * sends. bot.native.py_read_level and friends are the references.
 */

#define LEVEL_NUMBER_MAX 63

/* "[" and "]", made once at import (PyInit__cbook). */
static PyObject *open_bracket;
static PyObject *close_bracket;
static PyObject *float_zero;

static inline int
is_ws(Py_UCS4 c)
{
    /* One comparison for what the readers meet almost always: a printable character. */
    return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r');
}

static ALWAYS_INLINE Py_ssize_t
skip_ws(int kind, const void *data, Py_ssize_t len, Py_ssize_t i)
{
    while (i < len && is_ws(PyUnicode_READ(kind, data, i)))
        i++;
    return i;
}

static inline int
is_digit(Py_UCS4 c)
{
    return c >= '0' && c <= '9';
}

/* Powers of ten a double holds exactly (5^22 < 2^53). */
static const double exact_pow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * A JSON number at ``i``, quoted or bare. Returns the index after it (and its closing quote)
 * and sets *value, or -1 when the text there is not one.
 *
 * The value is what float() gives. Prices and quantities have few digits, so most take the
 * exact fast path: a mantissa of at most 2^53 and a power of ten of at most 22 are both exact
 * doubles, and one IEEE multiplication or division of exact values is correctly rounded
 * (Clinger). Anything else goes through PyOS_string_to_double, as float() does.
 */
static ALWAYS_INLINE Py_ssize_t
read_number(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, double *value)
{
    char buf[LEVEL_NUMBER_MAX + 1];
    int n = 0;
    Py_UCS4 c;
    uint64_t mantissa = 0;
    int digits = 0;     /* significant digits in mantissa (leading zeros skipped) */
    int exp10 = 0;      /* decimal exponent applied to mantissa */
    int exact = 1;      /* the fast path applies */
    int exp_value = 0, exp_negative = 0;
    /* A JSON number, quoted as Binance sends it, or bare. */
    int quoted = i < len && PyUnicode_READ(kind, data, i) == '"';
    if (quoted)
        i++;
    {
        /*
         * The common shape first, in one tight pass with nothing copied: [-]int[.frac] of at
         * most 19 digits in all (so the mantissa cannot overflow), no exponent. Anything else
         * is read again from ``i`` by the general reader below, which gives the same value
         * for this shape.
         */
        Py_ssize_t j = i;
        uint64_t m = 0;
        unsigned d;
        int total = 0, frac = 0;
        int minus = j < len && PyUnicode_READ(kind, data, j) == '-';
        j += minus;
        Py_ssize_t first = j;
        while (j < len && (d = (unsigned)PyUnicode_READ(kind, data, j) - '0') < 10u) {
            m = m * 10 + d;
            j++;
        }
        total = (int)(j - first);
        /* one or more digits, and no leading zero unless it is the only integer digit */
        int ok = total > 0 && (total == 1 || PyUnicode_READ(kind, data, first) != '0');
        if (ok && j < len && PyUnicode_READ(kind, data, j) == '.') {
            Py_ssize_t frac_at = ++j;
            while (j < len && (d = (unsigned)PyUnicode_READ(kind, data, j) - '0') < 10u) {
                m = m * 10 + d;
                j++;
            }
            frac = (int)(j - frac_at);
            total += frac;
            ok = frac > 0;
        }
        if (ok && total <= 19 && m <= ((uint64_t)1 << 53) && frac <= 22) {
            Py_UCS4 next = j < len ? PyUnicode_READ(kind, data, j) : 0;
            if (next != 'e' && next != 'E' && (!quoted || next == '"')) {
                double v = frac ? (double)m / exact_pow10[frac] : (double)m;
                *value = minus ? -v : v;
                return j + quoted;
            }
        }
    }
/* Append the character at i to buf and step on; fail when the number is too long. */
#define TAKE()                                                                                  \
    do {                                                                                        \
        if (n == LEVEL_NUMBER_MAX)                                                              \
            return -1;                                                                          \
        buf[n++] = (char)c;                                                                     \
        i++;                                                                                    \
    } while (0)
#define PEEK() (c = (i < len ? PyUnicode_READ(kind, data, i) : 0))
/* A mantissa digit (of the integer part, or of the fraction when ``frac``). */
#define DIGIT(frac)                                                                             \
    do {                                                                                        \
        if (digits < 19) {                                                                      \
            mantissa = mantissa * 10 + (uint64_t)(c - '0');                                     \
            if (mantissa)                                                                       \
                digits++;                                                                       \
            if (frac)                                                                           \
                exp10--;                                                                        \
        }                                                                                       \
        else if (frac) {                                                                        \
            exact = 0;                                                                          \
        }                                                                                       \
        else {                                                                                  \
            exact = 0;                                                                          \
            exp10++;                                                                            \
        }                                                                                       \
        TAKE();                                                                                 \
    } while (0)
    int negative = PEEK() == '-';
    if (negative)
        TAKE();
    if (PEEK() == '0')
        TAKE();
    else if (c >= '1' && c <= '9') {
        do
            DIGIT(0);
        while (is_digit(PEEK()));
    }
    else
        return -1;
    if (PEEK() == '.') {
        TAKE();
        if (!is_digit(PEEK()))
            return -1;
        do
            DIGIT(1);
        while (is_digit(PEEK()));
    }
    if (PEEK() == 'e' || c == 'E') {
        TAKE();
        if (PEEK() == '+' || c == '-') {
            exp_negative = c == '-';
            TAKE();
        }
        if (!is_digit(PEEK()))
            return -1;
        do {
            if (exp_value < 10000)
                exp_value = exp_value * 10 + (int)(c - '0');
            TAKE();
        } while (is_digit(PEEK()));
    }
    if (quoted) {
        if (PEEK() != '"')
            return -1;
        i++;
    }
#undef DIGIT
#undef PEEK
#undef TAKE
    exp10 += exp_negative ? -exp_value : exp_value;
    if (exact && mantissa <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mantissa;
        v = exp10 < 0 ? v / exact_pow10[-exp10] : v * exact_pow10[exp10];
        *value = negative ? -v : v;
        return i;
    }
    buf[n] = '\0';
    /* The grammar is checked, so this cannot fail; an overflow reads as inf. */
    double v = PyOS_string_to_double(buf, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *value = v;
    return i;
}

/*
 * "0" or "0.0...0" (quoted) at ``i``: the quantity of a deletion, most levels of a sweep.
 * Returns the index after its closing quote, or -1 for anything else (read_number decides,
 * and reads these as 0.0 too).
 */
static ALWAYS_INLINE Py_ssize_t
quoted_zero(int kind, const void *data, Py_ssize_t len, Py_ssize_t i)
{
    if (i + 2 >= len || PyUnicode_READ(kind, data, i) != '"'
            || PyUnicode_READ(kind, data, i + 1) != '0')
        return -1;
    Py_ssize_t j = i + 2;
    if (PyUnicode_READ(kind, data, j) == '.') {
        Py_ssize_t first = ++j;
        while (j < len && PyUnicode_READ(kind, data, j) == '0')
            j++;
        if (j == first)
            return -1;
    }
    return j < len && PyUnicode_READ(kind, data, j) == '"' ? j + 1 : -1;
}

/*
 * A decimal of the plain shape, int[.frac] with at most 19 digits in all and no leading zero,
 * at ``p``: returns the character after it and sets *value, as read_number's fast path reads
 * it, or NULL for anything else. The digit loops have no bound check: they stop at the
 * string's NUL terminator at the latest (see plain_level).
 */
static ALWAYS_INLINE const Py_UCS1 *
plain_decimal(const Py_UCS1 *p, double *value)
{
    const Py_UCS1 *first = p;
    uint64_t m = 0;
    unsigned d;
    while ((d = (unsigned)*p - '0') < 10u) {
        m = m * 10 + d;
        p++;
    }
    Py_ssize_t total = p - first;
    if (total == 0 || (total > 1 && *first == '0'))
        return NULL;
    Py_ssize_t frac = 0;
    if (*p == '.') {
        const Py_UCS1 *frac_at = ++p;
        while ((d = (unsigned)*p - '0') < 10u) {
            m = m * 10 + d;
            p++;
        }
        frac = p - frac_at;
        if (frac == 0)
            return NULL;
        total += frac;
    }
    if (total > 19 || m > ((uint64_t)1 << 53))
        return NULL;
    *value = frac ? (double)m / exact_pow10[frac] : (double)m;
    return p;
}

/*
 * The level shape venues send, ["int[.frac]","int[.frac]"] with no space, in one pass over
 * ASCII text: the index after its "]" with *price and *qty set, or -1 to leave the level to
 * the general reader (any other shape, a value out of range, or a level that does not end
 * by ``len``). The same values either way: this is the general reader's fast path unrolled.
 * Reading on past ``len`` is safe, as every str keeps a NUL after its last character (the
 * readers are handed str data only); whatever lies there is never used.
 */
static ALWAYS_INLINE Py_ssize_t
plain_level(const Py_UCS1 *t, Py_ssize_t len, Py_ssize_t i, double *price, double *qty)
{
    const Py_UCS1 *p = t + i;
    if (i + 2 > len || p[0] != '[' || p[1] != '"')
        return -1;
    p = plain_decimal(p + 2, price);
    if (p == NULL || p[0] != '"' || p[1] != ',' || p[2] != '"')
        return -1;
    p = plain_decimal(p + 3, qty);
    if (p == NULL || p[0] != '"' || p[1] != ']')
        return -1;
    Py_ssize_t end = p + 2 - t;
    if (end > len || !(*price > 0.0 && *price <= DBL_MAX) || !(*qty <= DBL_MAX))
        return -1;
    return end;
}

/*
 * The level whose "[" is at ``i``. Returns the index after its "]" and sets *price, *qty,
 * or -1 with *what saying what is wrong.
 */
static ALWAYS_INLINE Py_ssize_t
text_level(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, double *price,
           double *qty, const char **what)
{
    if (kind == PyUnicode_1BYTE_KIND) {
        Py_ssize_t end = plain_level((const Py_UCS1 *)data, len, i, price, qty);
        if (end >= 0)
            return end;
    }
    *what = "not a level";
    if (i >= len || PyUnicode_READ(kind, data, i) != '[')
        return -1;
    i = read_number(kind, data, len, skip_ws(kind, data, len, i + 1), price);
    if (i < 0)
        return -1;
    i = skip_ws(kind, data, len, i);
    if (i >= len || PyUnicode_READ(kind, data, i) != ',')
        return -1;
    i = skip_ws(kind, data, len, i + 1);
    Py_ssize_t zero = quoted_zero(kind, data, len, i);
    if (zero > 0) {
        *qty = 0.0;
        i = zero;
    }
    else {
        i = read_number(kind, data, len, i, qty);
        if (i < 0)
            return -1;
    }
    i = skip_ws(kind, data, len, i);
    if (i >= len || PyUnicode_READ(kind, data, i) != ']')
        return -1;
    if (!(*price > 0.0 && *price <= DBL_MAX)) {
        *what = "price not finite and positive";
        return -1;
    }
    if (!(*qty >= 0.0 && *qty <= DBL_MAX)) {
        *what = "quantity not finite and non-negative";
        return -1;
    }
    *qty += 0.0; /* -0 is 0 */
    return i + 1;
}

static PyObject *
level_error(Py_ssize_t at, const char *what)
{
    PyErr_Format(PyExc_ValueError, "corrupt level array at %zd: %s", at, what);
    return NULL;
}

/*
 * Read ``n`` levels from ``i`` (the "[" of the first), separated by ws "," ws, into a new
 * LevelRun; *end is set after the last "]" (then ws). NULL on an error: a level that is not
 * [price, qty] (text_level's checks) or a missing ",".
 */
static ALWAYS_INLINE PyObject *
text_run_k(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, Py_ssize_t n,
           Py_ssize_t *end)
{
    LevelRun *run = (LevelRun *)run_from_arrays(NULL, NULL, 0, 0);
    if (run == NULL)
        return NULL;
    double *block = PyMem_Realloc(run->price, (size_t)(n ? 2 * n : 1) * sizeof(double));
    if (block == NULL) {
        Py_DECREF(run);
        return PyErr_NoMemory();
    }
    run->price = block;
    run->qty = block + n;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (k > 0) {
            if (i >= len || PyUnicode_READ(kind, data, i) != ',') {
                Py_DECREF(run);
                return level_error(i, "expected ','");
            }
            i = skip_ws(kind, data, len, i + 1);
        }
        const char *what;
        Py_ssize_t next = text_level(kind, data, len, i, run->price + k, run->qty + k, &what);
        if (next < 0) {
            Py_DECREF(run);
            return level_error(i, what);
        }
        i = skip_ws(kind, data, len, next);
    }
    run->n = n;
    *end = i;
    return (PyObject *)run;
}

static PyObject *
text_run(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, Py_ssize_t n,
         Py_ssize_t *end)
{
#define TEXT_RUN(k) text_run_k(k, data, len, i, n, end)
    return BY_KIND(kind, TEXT_RUN);
#undef TEXT_RUN
}

/* text_run's levels as a tuple of (price, qty) tuples (deletions share one 0.0). */
static PyObject *
text_levels(int kind, const void *data, Py_ssize_t len, Py_ssize_t i, Py_ssize_t n,
            Py_ssize_t *end)
{
    LevelRun *run = (LevelRun *)text_run(kind, data, len, i, n, end);
    if (run == NULL)
        return NULL;
    PyObject *levels = PyTuple_New(n);
    for (Py_ssize_t k = 0; levels != NULL && k < n; k++) {
        double qty = run->qty[k];
        PyObject *level = PyTuple_New(2);
        PyObject *p = PyFloat_FromDouble(run->price[k]);
        PyObject *q;
        if (qty == 0.0 && !signbit(qty)) {
            /* a deletion: most levels of a sweep; one shared 0.0 (floats are immutable) */
            Py_INCREF(float_zero);
            q = float_zero;
        }
        else {
            q = PyFloat_FromDouble(qty);
        }
        if (level == NULL || p == NULL || q == NULL) {
            Py_XDECREF(level);
            Py_XDECREF(p);
            Py_XDECREF(q);
            Py_CLEAR(levels);
            break;
        }
        PyTuple_SET_ITEM(level, 0, p);
        PyTuple_SET_ITEM(level, 1, q);
        PyTuple_SET_ITEM(levels, k, level);
    }
    Py_DECREF(run);
    return levels;
}

/* Count the levels of an array (the "[" after index 0). */
static Py_ssize_t
count_levels(int kind, const void *data, Py_ssize_t len)
{
    Py_ssize_t n = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *at = (const Py_UCS1 *)data + 1, *stop = (const Py_UCS1 *)data + len;
        while (at < stop && (at = memchr(at, '[', (size_t)(stop - at))) != NULL) {
            n++;
            at++;
        }
        return n;
    }
    for (Py_ssize_t i = 1; i < len; i++)
        if (PyUnicode_READ(kind, data, i) == '[')
            n++;
    return n;
}

/* Whether the array closes at ``i`` ("]" then only ws to the end). */
static int
closes_at(int kind, const void *data, Py_ssize_t len, Py_ssize_t i)
{
    return i < len && PyUnicode_READ(kind, data, i) == ']'
        && skip_ws(kind, data, len, i + 1) == len;
}

static int
text_arg(PyObject *text, const char *name)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s: text must be str", name);
        return -1;
    }
    return 0;
}

/*
 * The optional (start, stop) of a reader's text at args[at], args[at + 1]: the level array is
 * text[start:stop] (the whole text when absent), read in place. Sets *data and *len to the
 * region's first character and length. Returns -1 with an exception set when out of range.
 */
static int
text_region(PyObject *text, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at,
            Py_ssize_t *start, const void **data, Py_ssize_t *len)
{
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    Py_ssize_t stop = size;
    *start = 0;
    if (nargs > at) {
        *start = PyNumber_AsSsize_t(args[at], PyExc_OverflowError);
        if (*start == -1 && PyErr_Occurred())
            return -1;
        stop = PyNumber_AsSsize_t(args[at + 1], PyExc_OverflowError);
        if (stop == -1 && PyErr_Occurred())
            return -1;
        if (!(0 <= *start && *start <= stop && stop <= size)) {
            PyErr_Format(PyExc_ValueError, "region %zd:%zd is not within the text (%zd)",
                         *start, stop, size);
            return -1;
        }
    }
    *data = (const char *)PyUnicode_DATA(text) + *start * PyUnicode_KIND(text);
    *len = stop - *start;
    return 0;
}

/*
 * The whole array (``len`` characters at ``data``) as a tuple of levels, or a LevelRun when
 * ``as_run``; NULL on an error.
 */
static PyObject *
parse_region(int kind, const void *data, Py_ssize_t len, int as_run)
{
    if (len == 0 || PyUnicode_READ(kind, data, 0) != '[')
        return level_error(0, "expected '['");
    Py_ssize_t n = count_levels(kind, data, len);
    Py_ssize_t end;
    PyObject *levels = (as_run ? text_run : text_levels)(kind, data, len,
                                                         skip_ws(kind, data, len, 1), n, &end);
    if (levels != NULL && !closes_at(kind, data, len, end)) {
        Py_DECREF(levels);
        return level_error(end, "expected ']' and the end");
    }
    return levels;
}

static PyObject *
parse_all(PyObject *text)
{
    return parse_region(PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text),
                        0);
}

/* parse_levels(text): every level of an array, as a tuple of (price, qty). */
static PyObject *
cbook_parse_levels(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (text_arg(text, "parse_levels") < 0)
        return NULL;
    return parse_all(text);
}

/*
 * "[" + text[start:stop] (open) or text[start:stop] + "]": one copy for ASCII text (what
 * Binance sends), else a slice and a concatenation, which keep the string canonical.
 */
static PyObject *
bracketed(PyObject *text, Py_ssize_t start, Py_ssize_t stop, int open)
{
    if (PyUnicode_IS_ASCII(text)) {
        PyObject *out = PyUnicode_New(stop - start + 1, 127);
        if (out == NULL)
            return NULL;
        Py_UCS1 *to = PyUnicode_1BYTE_DATA(out);
        memcpy(to + (open ? 1 : 0), PyUnicode_1BYTE_DATA(text) + start, (size_t)(stop - start));
        to[open ? 0 : stop - start] = open ? '[' : ']';
        return out;
    }
    PyObject *part = PyUnicode_Substring(text, start, stop);
    if (part == NULL)
        return NULL;
    PyObject *out = open ? PyUnicode_Concat(open_bracket, part)
                         : PyUnicode_Concat(part, close_bracket);
    Py_DECREF(part);
    return out;
}


/*
 * split_levels(text, count, at_end[, start, stop]): the ``count`` levels at the end (at_end) or
 * the start of an array (text[start:stop], read in place), read now, and the rest left raw.
 * Returns (levels in array order, the price of the boundary level next to them (nan if none),
 * the rest as an array that starts with the boundary level ("" if none)). With fewer than
 * count + 1 levels, all are read and checked.
 */
/*
 * split_levels on the array text[base:base + len] (kind, data): sets *near (a tuple, or a
 * LevelRun when as_run), *boundary and *rest (new references); 0, or -1 with an error set.
 */
static int
split_core(PyObject *text, Py_ssize_t base, const void *data, Py_ssize_t len, int kind,
           Py_ssize_t count, int at_end, int as_run, PyObject **near_out, double *boundary_out,
           PyObject **rest_out)
{
    if (len == 0 || PyUnicode_READ(kind, data, 0) != '[') {
        level_error(0, "expected '['");
        return -1;
    }
    Py_ssize_t start = at_end ? len : 0;
    for (Py_ssize_t k = 0; k <= count && start >= 0; k++)
        start = next_bracket(kind, data, len, start, at_end);
    if (start < 0) {
        PyObject *levels = parse_region(kind, data, len, as_run);
        if (levels == NULL)
            return -1;
        PyObject *empty = PyUnicode_New(0, 127);
        if (empty == NULL) {
            Py_DECREF(levels);
            return -1;
        }
        *near_out = levels;
        *boundary_out = Py_NAN;
        *rest_out = empty;
        return 0;
    }
    Py_ssize_t end;
    PyObject *levels, *rest, *near;
    double boundary;
    if (at_end) {
        /* start opens the boundary level; the near ones follow it, then "]" closes. */
        levels = (as_run ? text_run : text_levels)(kind, data, len, start, count + 1, &end);
        if (levels == NULL)
            return -1;
        if (!closes_at(kind, data, len, end)) {
            Py_DECREF(levels);
            level_error(end, "expected ']' and the end");
            return -1;
        }
        if (as_run) {
            /* the boundary level first: drop it, in place */
            LevelRun *run = (LevelRun *)levels;
            boundary = run->price[0];
            memmove(run->price, run->price + 1, (size_t)count * sizeof(double));
            memmove(run->qty, run->qty + 1, (size_t)count * sizeof(double));
            run->n = count;
            near = levels;
        }
        else {
            boundary = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(PyTuple_GET_ITEM(levels, 0), 0));
            near = PyTuple_GetSlice(levels, 1, count + 1);
            Py_DECREF(levels);
            if (near == NULL)
                return -1;
        }
        /* The rest: up to the boundary level's "]", closed again. */
        if (count > 0) {
            /* Up to the first near level, less the separator before it. */
            Py_ssize_t cut = next_bracket(kind, data, len, start, 0);
            while (cut > 0 && is_ws(PyUnicode_READ(kind, data, cut - 1)))
                cut--;
            if (cut > 0 && PyUnicode_READ(kind, data, cut - 1) == ',')
                cut--;
            rest = bracketed(text, base, base + cut, 0);
        }
        else if (base == 0 && len == PyUnicode_GET_LENGTH(text)) {
            Py_INCREF(text);
            rest = text;
        }
        else {
            rest = PyUnicode_Substring(text, base, base + len);
        }
    }
    else {
        /* The near levels from the start, then the boundary level, then "," or the end. */
        levels = (as_run ? text_run : text_levels)(kind, data, len,
                                                   skip_ws(kind, data, len, 1), count + 1, &end);
        if (levels == NULL)
            return -1;
        if (!(end < len && PyUnicode_READ(kind, data, end) == ',')
            && !closes_at(kind, data, len, end)) {
            Py_DECREF(levels);
            level_error(end, "expected ',' or ']' and the end");
            return -1;
        }
        if (as_run) {
            /* the boundary level last: drop it */
            LevelRun *run = (LevelRun *)levels;
            boundary = run->price[count];
            run->n = count;
            near = levels;
        }
        else {
            boundary = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(PyTuple_GET_ITEM(levels, count), 0));
            near = PyTuple_GetSlice(levels, 0, count);
            Py_DECREF(levels);
            if (near == NULL)
                return -1;
        }
        rest = bracketed(text, base + start, base + len, 1);
    }
    if (rest == NULL) {
        Py_DECREF(near);
        return -1;
    }
    *near_out = near;
    *boundary_out = boundary;
    *rest_out = rest;
    return 0;
}


static PyObject *
split_impl(PyObject *const *args, Py_ssize_t nargs, int as_run)
{
    const char *name = as_run ? "split_run" : "split_levels";
    if (nargs != 3 && nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "%s(text, count, at_end[, start, stop]) takes 3 or 5 arguments", name);
        return NULL;
    }
    PyObject *text = args[0];
    if (text_arg(text, name) < 0)
        return NULL;
    Py_ssize_t count = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 0) {
        PyErr_Format(PyExc_ValueError, "%s: count must be >= 0", name);
        return NULL;
    }
    int at_end = PyObject_IsTrue(args[2]);
    if (at_end < 0)
        return NULL;
    Py_ssize_t base, len;
    const void *data;
    if (text_region(text, args, nargs, 3, &base, &data, &len) < 0)
        return NULL;
    PyObject *near, *rest;
    double boundary;
    if (split_core(text, base, data, len, PyUnicode_KIND(text), count, at_end, as_run, &near,
                   &boundary, &rest) < 0)
        return NULL;
    return Py_BuildValue("(NdN)", near, boundary, rest);
}

static PyObject *
cbook_split_levels(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return split_impl(args, nargs, 0);
}

/* split_run(text, count, at_end[, start, stop]): split_levels with the levels as a LevelRun. */
static PyObject *
cbook_split_run(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return split_impl(args, nargs, 1);
}

/*
 * nearest_at_end(text, bids[, start, stop]): whether the levels of a side nearest the touch come
 * last in its array (text[start:stop]), from the prices of its two end levels (the highest bid, the lowest ask is nearest);
 * True with fewer than two levels. Raises ValueError when an end level is corrupt.
 */
/* nearest_at_end on text[0:len] (kind, data): 1 or 0, or -1 with ValueError set. */
static int
nearest_core(int kind, const void *data, Py_ssize_t len, int bids)
{
    Py_ssize_t first = next_bracket(kind, data, len, 0, 0);
    Py_ssize_t last = next_bracket(kind, data, len, len, 1);
    if (first < 0 || last == first)
        return 1;
    double first_price, last_price, qty;
    const char *what;
    if (text_level(kind, data, len, first, &first_price, &qty, &what) < 0) {
        level_error(first, what);
        return -1;
    }
    if (text_level(kind, data, len, last, &last_price, &qty, &what) < 0) {
        level_error(last, what);
        return -1;
    }
    return (first_price < last_price) == bids;
}

static PyObject *
cbook_nearest_at_end(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "nearest_at_end(text, bids[, start, stop]) takes 2 or 4 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (text_arg(text, "nearest_at_end") < 0)
        return NULL;
    int bids = PyObject_IsTrue(args[1]);
    if (bids < 0)
        return NULL;
    Py_ssize_t base, len;
    const void *data;
    if (text_region(text, args, nargs, 2, &base, &data, &len) < 0)
        return NULL;
    int at_end = nearest_core(PyUnicode_KIND(text), data, len, bids);
    return at_end < 0 ? NULL : PyBool_FromLong(at_end);
}

/*
 * The walk of BookSide.settle_take over the raw level array ``data``: reads the levels nearest
 * the touch first (from the end when from_end) against the side's own levels and keeps those
 * to book, in walk order, in the side's scratch arrays (prices in tmp_keys). Sets *boundary to
 * the price of the level next to them and *rest_at to where the rest is cut: the boundary
 * level's "[" (from the start) or the "," after it (from the end); -1 when no level is left.
 * Returns how many levels it took, or -1 with ValueError set.
 *
 * The stop rule is BookSide.settle_take's (below). Whatever split_levels would check
 * for that many levels is checked too, the separators and the array's own brackets, so the
 * result is exactly that of the reference: count levels, then split_levels(text, count).
 */
static ALWAYS_INLINE Py_ssize_t
settle_take_k(int kind, const void *data, Py_ssize_t len, int from_end, BookSide *self,
              double *boundary, Py_ssize_t *rest_at)
{
#define AT(i) PyUnicode_READ(kind, data, (i))
#define FAIL(at, what)                                                                          \
    do {                                                                                        \
        level_error((at), (what));                                                              \
        return -1;                                                                              \
    } while (0)
    const double *keys = self->keys;
    double sign = self->sign;
    Py_ssize_t j = self->n - 1; /* the highest stored level no level read has matched */
    Py_ssize_t count = 0;
    const char *what;
    *boundary = Py_NAN;
    *rest_at = -1;
    Py_ssize_t i = next_bracket_k(kind, data, len, from_end ? len : 0, from_end);
    if (i < 0)
        return 0;
    double price, qty;
    Py_ssize_t end = text_level(kind, data, len, i, &price, &qty, &what);
    if (end < 0)
        FAIL(i, what);
    /* The array's own bracket at the end read from, checked once a level is taken. */
    Py_ssize_t bad_at = -1;
    if (AT(0) != '[')
        bad_at = 0;
    else if (from_end ? !closes_at(kind, data, len, skip_ws(kind, data, len, end))
                      : skip_ws(kind, data, len, 1) != i)
        bad_at = from_end ? end : 1;
    Py_ssize_t comma = -1; /* from the end: the "," after the level at i */
    for (;;) {
        double key = sign * price;
        if (j >= 0 && keys[j] > key) {
            /* A stored level above this one stays the best: this one is the boundary. */
            if (count == 0)
                return 0;
            if (!from_end) {
                Py_ssize_t after = skip_ws(kind, data, len, end);
                if (!(after < len && AT(after) == ',') && !closes_at(kind, data, len, after))
                    FAIL(after, "expected ',' or ']' and the end");
            }
            *boundary = price;
            *rest_at = from_end ? comma : i;
            break;
        }
        if (j >= 0 && keys[j] == key)
            j--;
        if (count >= self->tmp_cap && grow_tmp(self, count + 1) < 0)
            return -1;
        self->tmp_keys[count] = price;
        self->tmp_qty[count++] = qty;
        /* The next level in walk order, and the separator between the two. */
        Py_ssize_t next, next_end;
        if (from_end) {
            next = next_bracket_k(kind, data, len, i, 1);
            if (next < 0) {
                if (skip_ws(kind, data, len, 1) != i)
                    FAIL(1, "expected a level");
                break; /* every level taken */
            }
            double next_price, next_qty;
            next_end = text_level(kind, data, len, next, &next_price, &next_qty, &what);
            if (next_end < 0)
                FAIL(next, what);
            comma = skip_ws(kind, data, len, next_end);
            if (!(comma < len && AT(comma) == ',' && skip_ws(kind, data, len, comma + 1) == i))
                FAIL(next_end, "expected ',' and the next level");
            if (qty > 0.0) { /* this level is the best now: the next one is the boundary */
                *boundary = next_price;
                *rest_at = comma;
                break;
            }
            price = next_price;
            qty = next_qty;
        }
        else {
            Py_ssize_t sep = skip_ws(kind, data, len, end);
            if (sep < len && AT(sep) == ',') {
                next = skip_ws(kind, data, len, sep + 1);
            }
            else if (closes_at(kind, data, len, sep)) {
                break; /* every level taken */
            }
            else {
                FAIL(sep, "expected ',' or ']' and the end");
            }
            double next_price, next_qty;
            next_end = text_level(kind, data, len, next, &next_price, &next_qty, &what);
            if (next_end < 0)
                FAIL(next, what);
            if (qty > 0.0) {
                Py_ssize_t after = skip_ws(kind, data, len, next_end);
                if (!(after < len && AT(after) == ',') && !closes_at(kind, data, len, after))
                    FAIL(after, "expected ',' or ']' and the end");
                *boundary = next_price;
                *rest_at = next;
                break;
            }
            price = next_price;
            qty = next_qty;
        }
        i = next;
        end = next_end;
    }
    if (bad_at >= 0)
        FAIL(bad_at, "expected the array's bracket");
    return count;
#undef FAIL
#undef AT
}

/*
 * BookSide.settle_take(text, from_end): take the levels of a raw level array of this side that
 * must be booked before no further one can change the best level, nearest the touch first
 * (from its end when from_end). Returns (those levels in array order as a LevelRun, the price
 * of the boundary level next to them or nan, the rest of the array, raw, starting with the
 * boundary level, or ""). Nothing is booked. When none is needed: (empty run, nan, text).
 *
 * The levels are read in order against the side's own levels from the best down (signed
 * prices, so "down" is away from the touch on both sides): a stored level above the next
 * level read stays the best, so the walk stops before that level; a level read with a
 * quantity becomes the best, so the walk stops after it; a deletion goes on (it removes the
 * stored level at its price, if any). Exact when the array is sorted nearest first, as a
 * venue sends it; the caller checks the touch afterwards either way. Raises ValueError where
 * split_levels would for that many levels (a level read is corrupt, a bad separator or
 * bracket). Prices and quantities are read once, into C arrays: no Python object per level.
 */
static PyObject *
BookSide_settle_take(BookSide *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "settle_take(text, from_end) takes 2 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (text_arg(text, "settle_take") < 0)
        return NULL;
    int from_end = PyObject_IsTrue(args[1]);
    if (from_end < 0)
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    double boundary;
    Py_ssize_t rest_at;
#define SETTLE_TAKE(k) settle_take_k(k, data, len, from_end, self, &boundary, &rest_at)
    Py_ssize_t count = BY_KIND(kind, SETTLE_TAKE);
#undef SETTLE_TAKE
    if (count < 0)
        return NULL;
    PyObject *run = run_from_arrays(self->tmp_keys, self->tmp_qty, count, from_end);
    if (run == NULL)
        return NULL;
    PyObject *rest;
    if (count == 0) {
        Py_INCREF(text);
        rest = text;
    }
    else if (rest_at < 0) {
        rest = PyUnicode_New(0, 127);
    }
    else {
        rest = from_end ? bracketed(text, 0, rest_at, 0) : bracketed(text, rest_at, len, 1);
    }
    if (rest == NULL) {
        Py_DECREF(run);
        return NULL;
    }
    return Py_BuildValue("(NdN)", run, boundary, rest);
}

/*
 * parse_run(text): every level of an array, as a LevelRun (what parse_levels reads, with the
 * same checks, into C arrays instead of tuples).
 */
static PyObject *
cbook_parse_run(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (text_arg(text, "parse_run") < 0)
        return NULL;
    return parse_region(PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text),
                        1);
}

/*
 * A JSON string without escapes or control characters at ``i`` (its opening quote) of ASCII
 * text: returns the index of its closing quote, or -1.
 */
static Py_ssize_t
plain_string(const char *t, Py_ssize_t len, Py_ssize_t i)
{
    if (i >= len || t[i] != '"')
        return -1;
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '"')
            return i;
        if (c == '\\' || c < 0x20)
            return -1;
    }
    return -1;
}

/*
 * The digits of a JSON integer of at most 18 digits at ``i``: returns the index after them and
 * sets *value, or -1. The caller checks what follows (a fraction or an exponent is refused
 * there, as anything but the separator is).
 */
static Py_ssize_t
plain_int(const char *t, Py_ssize_t len, Py_ssize_t i, long long *value)
{
    int minus = i < len && t[i] == '-';
    Py_ssize_t j = i + minus, first = j;
    long long v = 0;
    while (j < len && t[j] >= '0' && t[j] <= '9') {
        v = v * 10 + (t[j] - '0');
        j++;
        if (j - first > 18)
            return -1;
    }
    if (j == first || (t[first] == '0' && j - first > 1))
        return -1;
    *value = minus ? -v : v;
    return j;
}

#define ENVELOPE_HEAD "{\"stream\":"
#define DATA_KEY ",\"data\":{"
#define ASKS_KEY "],\"a\":["

/*
 * The head of a Binance combined-stream depth diff in its compact layout,
 *
 *     {"stream":"<name>","data":{"<key>":<int or string>,...,"b":[<levels>],"a":[<levels>]}}
 *
 * read without a JSON decoder into *h: s, E, U, u, pu (-1 when absent) and the level arrays
 * as text[start:stop] spans (brackets included; not read here); returns 1. 0 (no error set)
 * for anything else: whitespace, escapes, a value that is not an integer or a plain string,
 * a field twice, a missing field, something after the asks, non-ASCII text. The caller then
 * decodes the frame generically, which decides; so this accepts only what that decoder reads
 * the same way. bot.native.py_cut_depth is the reference.
 */
typedef struct {
    long long E, U, u, pu;
    Py_ssize_t s_start, s_stop, bids_start, bids_stop, asks_start, asks_stop;
} DepthHead;

static int
depth_head(PyObject *text, DepthHead *h)
{
    if (!PyUnicode_IS_ASCII(text))
        return 0;
    const char *t = (const char *)PyUnicode_1BYTE_DATA(text);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    const Py_ssize_t head = (Py_ssize_t)sizeof ENVELOPE_HEAD - 1;
    const Py_ssize_t data_key = (Py_ssize_t)sizeof DATA_KEY - 1;
    if (len < head || memcmp(t, ENVELOPE_HEAD, (size_t)head) != 0)
        return 0;
    Py_ssize_t i = plain_string(t, len, head);
    if (i < 0 || len - (i + 1) < data_key || memcmp(t + i + 1, DATA_KEY, (size_t)data_key) != 0)
        return 0;
    i += 1 + data_key;
    /* the data object's fields, up to "b" */
    enum { F_S, F_E, F_U, F_LU, F_PU, N_FIELDS };
    long long ints[N_FIELDS] = {0};
    int seen[N_FIELDS] = {0};
    Py_ssize_t s_start = 0, s_stop = 0;
    for (;;) {
        Py_ssize_t key_end = plain_string(t, len, i);
        if (key_end < 0 || key_end + 1 >= len || t[key_end + 1] != ':')
            return 0;
        const char *key = t + i + 1;
        Py_ssize_t key_len = key_end - i - 1;
        Py_ssize_t v = key_end + 2;
        if (key_len == 1 && key[0] == 'b')
            break;
        if (key_len == 1 && key[0] == 'a')
            return 0; /* the asks key before the bids: a field twice, or not the layout */
        int field = -1;
        if (key_len == 1) {
            switch (key[0]) {
            case 's': field = F_S; break;
            case 'E': field = F_E; break;
            case 'U': field = F_U; break;
            case 'u': field = F_LU; break;
            default: break;
            }
        }
        else if (key_len == 2 && key[0] == 'p' && key[1] == 'u') {
            field = F_PU;
        }
        if (field >= 0) {
            if (seen[field])
                return 0;
            seen[field] = 1;
        }
        Py_ssize_t next;
        if (v < len && t[v] == '"') {
            if (field >= 0 && field != F_S)
                return 0;
            next = plain_string(t, len, v);
            if (next < 0)
                return 0;
            if (field == F_S) {
                s_start = v + 1;
                s_stop = next;
            }
            next++;
        }
        else {
            long long value;
            if (field == F_S)
                return 0;
            next = plain_int(t, len, v, &value);
            if (next < 0)
                return 0;
            if (field >= 0)
                ints[field] = value;
        }
        if (next >= len || t[next] != ',')
            return 0;
        i = next + 1;
    }
    if (!(seen[F_S] && seen[F_E] && seen[F_U] && seen[F_LU]))
        return 0;
    /* "b":[ ... ],"a":[ ... ]}} with nothing else: the first "a" after the bids is the asks
     * key's (level arrays hold only digits, ".", quotes, commas and brackets). */
    Py_ssize_t bids_start = i + 4; /* "b": then [ */
    if (bids_start >= len || t[bids_start] != '[')
        return 0;
    const char *a = memchr(t + bids_start, 'a', (size_t)(len - bids_start));
    const Py_ssize_t asks_key = (Py_ssize_t)sizeof ASKS_KEY - 1;
    Py_ssize_t asks_at = a == NULL ? -1 : (a - t) - 3;
    if (asks_at < bids_start || len - asks_at < asks_key
        || memcmp(t + asks_at, ASKS_KEY, (size_t)asks_key) != 0)
        return 0;
    Py_ssize_t asks_start = asks_at + asks_key - 1, asks_stop = len - 2;
    if (len < 3 || memcmp(t + len - 3, "]}}", 3) != 0 || asks_stop < asks_start + 2)
        return 0;
    if (!(asks_stop - asks_start == 2 || (t[asks_stop - 2] == ']' && t[asks_stop - 1] == ']')))
        return 0; /* something follows the asks */
    h->E = ints[F_E];
    h->U = ints[F_U];
    h->u = ints[F_LU];
    h->pu = seen[F_PU] ? ints[F_PU] : -1;
    h->s_start = s_start;
    h->s_stop = s_stop;
    h->bids_start = bids_start;
    h->bids_stop = asks_at + 1;
    h->asks_start = asks_start;
    h->asks_stop = asks_stop;
    return 1;
}

static PyObject *
depth_symbol(PyObject *text, const DepthHead *h)
{
    return PyUnicode_FromStringAndSize((const char *)PyUnicode_1BYTE_DATA(text) + h->s_start,
                                       h->s_stop - h->s_start);
}

/*
 * cut_depth(text): the head of a compact Binance depth diff (see depth_head) as (s, E, U, u,
 * pu, bids_start, bids_stop, asks_start, asks_stop), or None when the text is not in that
 * layout: the head reader of split_depth on its own, so tests can hold it to its reference,
 * bot.native.py_cut_depth.
 */
static PyObject *
cbook_cut_depth(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (text_arg(text, "cut_depth") < 0)
        return NULL;
    DepthHead h;
    if (!depth_head(text, &h))
        Py_RETURN_NONE;
    PyObject *symbol = depth_symbol(text, &h);
    if (symbol == NULL)
        return NULL;
    return Py_BuildValue("(NLLLLnnnn)", symbol, h.E, h.U, h.u, h.pu, h.bids_start, h.bids_stop,
                         h.asks_start, h.asks_stop);
}

/* One side of split_depth: which end is nearest the touch, then split_run there. */
static int
split_side(PyObject *text, Py_ssize_t start, Py_ssize_t stop, int bids, Py_ssize_t count,
           int *at_end, PyObject **near, double *bound, PyObject **rest)
{
    const void *data = (const char *)PyUnicode_1BYTE_DATA(text) + start;
    *at_end = nearest_core(PyUnicode_1BYTE_KIND, data, stop - start, bids);
    if (*at_end < 0)
        return -1;
    if (split_core(text, start, data, stop - start, PyUnicode_1BYTE_KIND, count, *at_end, 1,
                   near, bound, rest) < 0)
        return -1;
    /* no deferred level: the bound no level can pass */
    if (*bound != *bound)
        *bound = bids ? -Py_HUGE_VAL : Py_HUGE_VAL;
    return 0;
}

/* A compact Binance depth diff read and split (split_depth's parts): new references. */
typedef struct {
    DepthHead h;
    int bids_at_end, asks_at_end;
    PyObject *near_b, *deep_b, *near_a, *deep_a;
    double bid_max, ask_min;
} DepthSplit;

/*
 * Read and split ``text`` (see split_depth below) into *out: 1, 0 when the text is not in the
 * compact layout (no error set), -1 with an error set (ValueError where a level reader raises).
 */
static int
split_depth_core(PyObject *text, Py_ssize_t count, DepthSplit *out)
{
    if (!depth_head(text, &out->h))
        return 0;
    const DepthHead *h = &out->h;
    if (split_side(text, h->bids_start, h->bids_stop, 1, count, &out->bids_at_end, &out->near_b,
                   &out->bid_max, &out->deep_b) < 0)
        return -1;
    if (split_side(text, h->asks_start, h->asks_stop, 0, count, &out->asks_at_end, &out->near_a,
                   &out->ask_min, &out->deep_a) < 0) {
        Py_DECREF(out->near_b);
        Py_DECREF(out->deep_b);
        return -1;
    }
    return 1;
}

static void
depth_split_release(DepthSplit *split)
{
    Py_DECREF(split->near_b);
    Py_DECREF(split->deep_b);
    Py_DECREF(split->near_a);
    Py_DECREF(split->deep_a);
}

/*
 * split_depth(text, count): a compact Binance depth diff read and split in one call, what
 * cut_depth, then nearest_at_end and split_run on each level array give: (s, E, U, u, pu,
 * near bids, near asks, deep bids, bids nearest at end, highest deep bid, deep asks, asks
 * nearest at end, lowest deep ask), the near levels as LevelRuns, the deep ones raw, the
 * bounds -inf / inf when no level is deferred. None when the text is not in that layout;
 * ValueError where the level readers raise. bot.native.py_split_depth is the reference.
 */
static PyObject *
cbook_split_depth(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "split_depth(text, count) takes 2 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (text_arg(text, "split_depth") < 0)
        return NULL;
    Py_ssize_t count = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "split_depth: count must be >= 0");
        return NULL;
    }
    DepthSplit split;
    int found = split_depth_core(text, count, &split);
    if (found <= 0) {
        if (found < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *symbol = depth_symbol(text, &split.h);
    if (symbol == NULL) {
        depth_split_release(&split);
        return NULL;
    }
    /* The 13-tuple filled directly (Py_BuildValue parses its format on every call). */
    PyObject *items[13] = {symbol, PyLong_FromLongLong(split.h.E),
                           PyLong_FromLongLong(split.h.U), PyLong_FromLongLong(split.h.u),
                           PyLong_FromLongLong(split.h.pu), split.near_b, split.near_a,
                           split.deep_b, PyBool_FromLong(split.bids_at_end),
                           PyFloat_FromDouble(split.bid_max), split.deep_a,
                           PyBool_FromLong(split.asks_at_end), PyFloat_FromDouble(split.ask_min)};
    PyObject *out = PyTuple_New(13);
    for (Py_ssize_t i = 0; i < 13; i++) {
        if (items[i] == NULL)
            Py_CLEAR(out);
    }
    if (out == NULL) {
        for (Py_ssize_t i = 0; i < 13; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 13; i++)
        PyTuple_SET_ITEM(out, i, items[i]);
    return out;
}

/* ------------------------------------------------------------------ DepthRoute
 *
 * adapters.binance.BinanceParser's path for an in-sync depth diff, from the raw frame to the
 * event, in one call: on_message's stream check, then _on_split_depth_frame (split_depth, the
 * symbol and pu checks, the events, and _sequence's accepting case). The Python stays the
 * reference: DepthRoute answers None (not mine), with nothing done, for anything else: text
 * that is not an ASCII str, another stream, another layout (split_depth's None), a corrupt
 * level (ValueError, which the Python path then counts), another symbol, a futures diff
 * without pu, a diff that does not continue the book (stale, a gap), or numbers out of the
 * range of a C long long. The caller keeps the state: it calls only while in sync and
 * splitting, and records the update id and the counters when an event comes back.
 * tests/test_binance_route.py holds it to the Python on the captures and on each case.
 */

typedef struct {
    PyObject_HEAD
    PyObject *prefix; /* ASCII str: "<symbol in lower case>@depth" */
    PyObject *symbol; /* ASCII str: the parser's symbol */
    Py_ssize_t count;
    int futures;
    PyObject *make_delta;
    PyObject *make_deep;
    PyObject *make_deferred;
    vectorcallfunc vectorcall;
} DepthRoute;

static PyObject *DepthRoute_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
DepthRoute_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"prefix", "symbol", "count", "futures", "make_delta", "make_deep",
                             "make_deferred", NULL};
    PyObject *prefix, *symbol, *make_delta, *make_deep, *make_deferred;
    Py_ssize_t count;
    int futures;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!npOOO", kwlist, &PyUnicode_Type, &prefix,
                                     &PyUnicode_Type, &symbol, &count, &futures, &make_delta,
                                     &make_deep, &make_deferred))
        return NULL;
    if (!PyUnicode_IS_ASCII(prefix) || !PyUnicode_IS_ASCII(symbol) || count < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "DepthRoute: prefix and symbol must be ASCII, count >= 0");
        return NULL;
    }
    DepthRoute *self = (DepthRoute *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = DepthRoute_vectorcall;
    self->count = count;
    self->futures = futures;
#define KEEP(field, value) (Py_INCREF(value), self->field = (value))
    KEEP(prefix, prefix);
    KEEP(symbol, symbol);
    KEEP(make_delta, make_delta);
    KEEP(make_deep, make_deep);
    KEEP(make_deferred, make_deferred);
#undef KEEP
    return (PyObject *)self;
}

static int
DepthRoute_traverse(DepthRoute *self, visitproc visit, void *arg)
{
    Py_VISIT(self->make_delta);
    Py_VISIT(self->make_deep);
    Py_VISIT(self->make_deferred);
    return 0;
}

static int
DepthRoute_clear(DepthRoute *self)
{
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->symbol);
    Py_CLEAR(self->make_delta);
    Py_CLEAR(self->make_deep);
    Py_CLEAR(self->make_deferred);
    return 0;
}

static void
DepthRoute_dealloc(DepthRoute *self)
{
    PyObject_GC_UnTrack(self);
    DepthRoute_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/*
 * The stream name of a combined-stream frame as BinanceParser._envelope_kind reads it: after
 * {"stream":" up to the first quote. Sets *name; returns its length, or -1 without an envelope
 * or a closing quote.
 */
static Py_ssize_t
envelope_stream(const char *t, Py_ssize_t len, const char **name)
{
    const Py_ssize_t head = (Py_ssize_t)sizeof ENVELOPE_HEAD; /* with the name's quote */
    if (len < head || memcmp(t, ENVELOPE_HEAD "\"", (size_t)head) != 0)
        return -1;
    const char *end = memchr(t + head, '"', (size_t)(len - head));
    if (end == NULL)
        return -1;
    *name = t + head;
    return end - *name;
}

/* Whether a stream name is the symbol's diff-depth stream (BinanceParser._stream_kind): the
 * prefix "<symbol>@depth" alone or followed by "@" (any update speed). */
static int
is_depth_stream(PyObject *prefix, const char *name, Py_ssize_t name_len)
{
    Py_ssize_t prefix_len = PyUnicode_GET_LENGTH(prefix);
    return name_len >= prefix_len
           && memcmp(name, PyUnicode_1BYTE_DATA(prefix), (size_t)prefix_len) == 0
           && (name_len == prefix_len || name[prefix_len] == '@');
}

/*
 * route(text, ts_local_ns, last_update_id, parser, epoch) -> the BookDelta (no deferred level)
 * or DeferredBookDelta _on_split_depth_frame returns for an in-sync diff, or None.
 */
static PyObject *
DepthRoute_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    DepthRoute *self = (DepthRoute *)callable;
    if (PyVectorcall_NARGS(nargsf) != 5 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "DepthRoute takes (text, ts_local_ns, last_update_id, parser, epoch)");
        return NULL;
    }
    PyObject *text = args[0], *ts_local = args[1], *parser = args[3], *epoch = args[4];
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text) || !PyLong_CheckExact(args[2]))
        Py_RETURN_NONE;
    const char *t = (const char *)PyUnicode_1BYTE_DATA(text);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    const char *name;
    Py_ssize_t name_len = envelope_stream(t, len, &name);
    if (name_len < 0 || !is_depth_stream(self->prefix, name, name_len))
        Py_RETURN_NONE;
    int overflow;
    long long book_id = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (overflow || (book_id == -1 && PyErr_Occurred()) || book_id == LLONG_MAX) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    DepthSplit split;
    int found = split_depth_core(text, self->count, &split);
    if (found <= 0) {
        if (found < 0) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError))
                return NULL;
            PyErr_Clear(); /* a corrupt level: the Python path counts it */
        }
        Py_RETURN_NONE;
    }
    const DepthHead *h = &split.h;
    Py_ssize_t symbol_len = PyUnicode_GET_LENGTH(self->symbol);
    const long long ms_to_ns = 1000000;
    int mine = h->s_stop - h->s_start == symbol_len
               && memcmp(t + h->s_start, PyUnicode_1BYTE_DATA(self->symbol),
                         (size_t)symbol_len) == 0
               && !(self->futures && h->pu < 0)
               && h->u > book_id
               && (self->futures ? h->pu == book_id : h->U <= book_id + 1)
               && h->E <= LLONG_MAX / ms_to_ns && h->E >= LLONG_MIN / ms_to_ns;
    if (!mine) {
        depth_split_release(&split);
        Py_RETURN_NONE;
    }
    PyObject *out = NULL, *near = NULL, *deep = NULL, *bid_max = NULL, *ask_min = NULL;
    PyObject *ts_exchange = PyLong_FromLongLong(h->E * ms_to_ns);
    PyObject *final_id = PyLong_FromLongLong(h->u);
    if (ts_exchange == NULL || final_id == NULL)
        goto done;
    PyObject *near_args[7] = {ts_exchange, ts_local, self->symbol, split.near_b, split.near_a,
                              final_id, Py_True};
    near = PyObject_Vectorcall(self->make_delta, near_args, 7, NULL);
    if (near == NULL)
        goto done;
    if (PyUnicode_GET_LENGTH(split.deep_b) == 0 && PyUnicode_GET_LENGTH(split.deep_a) == 0) {
        out = Py_NewRef(near);
        goto done;
    }
    if ((bid_max = PyFloat_FromDouble(split.bid_max)) == NULL
            || (ask_min = PyFloat_FromDouble(split.ask_min)) == NULL)
        goto done;
    PyObject *deep_args[9] = {parser, epoch, near, split.deep_b,
                              split.bids_at_end ? Py_True : Py_False, bid_max, split.deep_a,
                              split.asks_at_end ? Py_True : Py_False, ask_min};
    deep = PyObject_Vectorcall(self->make_deep, deep_args, 9, NULL);
    if (deep == NULL)
        goto done;
    PyObject *deferred_args[8] = {ts_exchange, ts_local, self->symbol, final_id, near, bid_max,
                                  ask_min, deep};
    out = PyObject_Vectorcall(self->make_deferred, deferred_args, 8, NULL);
done:
    Py_XDECREF(ts_exchange);
    Py_XDECREF(final_id);
    Py_XDECREF(near);
    Py_XDECREF(deep);
    Py_XDECREF(bid_max);
    Py_XDECREF(ask_min);
    depth_split_release(&split);
    return out;
}

/* DepthRoute and StreamKind hold nothing that changes: a copy of a parser shares them. */
static PyObject *
shared_copy(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyMethodDef Shared_methods[] = {
    {"__copy__", shared_copy, METH_NOARGS, NULL},
    {"__deepcopy__", shared_copy, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DepthRouteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.DepthRoute",
    .tp_basicsize = sizeof(DepthRoute),
    .tp_dealloc = (destructor)DepthRoute_dealloc,
    .tp_vectorcall_offset = offsetof(DepthRoute, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)DepthRoute_traverse,
    .tp_clear = (inquiry)DepthRoute_clear,
    .tp_methods = Shared_methods,
    .tp_doc = "DepthRoute(prefix, symbol, count, futures, make_delta, make_deep, "
              "make_deferred): BinanceParser's in-sync depth diff path; call (text, "
              "ts_local_ns, last_update_id, parser, epoch) -> the event, or None (not mine).",
    .tp_new = DepthRoute_new,
};

/* ------------------------------------------------------------------ StreamKind
 *
 * adapters.binance.BinanceParser._py_envelope_kind, the reference: what a combined-stream
 * frame carries, read from its envelope ({"stream":"<name>",...) without decoding it. The
 * name is read up to the first quote; the parser's trade stream is ``trade``, its diff-depth
 * stream (the prefix alone or followed by "@", any speed) ``depth``, any other name ``skip``;
 * no envelope, or no quote after it, is ``unknown``. None (not mine) for text that is not an
 * ASCII str: the reference decides. tests/test_binance_route.py holds the two together.
 */

typedef struct {
    PyObject_HEAD
    PyObject *depth_prefix; /* ASCII str */
    PyObject *trade_stream; /* ASCII str */
    PyObject *depth, *trade, *skip, *unknown;
    vectorcallfunc vectorcall;
} StreamKind;

static PyObject *StreamKind_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
StreamKind_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"depth_prefix", "trade_stream", "depth", "trade", "skip",
                             "unknown", NULL};
    PyObject *depth_prefix, *trade_stream, *depth, *trade, *skip, *unknown;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OOOO", kwlist, &PyUnicode_Type,
                                     &depth_prefix, &PyUnicode_Type, &trade_stream, &depth,
                                     &trade, &skip, &unknown))
        return NULL;
    if (!PyUnicode_IS_ASCII(depth_prefix) || !PyUnicode_IS_ASCII(trade_stream)) {
        PyErr_SetString(PyExc_ValueError, "StreamKind: stream names must be ASCII");
        return NULL;
    }
    StreamKind *self = (StreamKind *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = StreamKind_vectorcall;
#define KEEP(field, value) (Py_INCREF(value), self->field = (value))
    KEEP(depth_prefix, depth_prefix);
    KEEP(trade_stream, trade_stream);
    KEEP(depth, depth);
    KEEP(trade, trade);
    KEEP(skip, skip);
    KEEP(unknown, unknown);
#undef KEEP
    return (PyObject *)self;
}

/* It holds two names and four kinds: it can be part of no reference cycle, so no GC. */
static void
StreamKind_dealloc(StreamKind *self)
{
    Py_XDECREF(self->depth_prefix);
    Py_XDECREF(self->trade_stream);
    Py_XDECREF(self->depth);
    Py_XDECREF(self->trade);
    Py_XDECREF(self->skip);
    Py_XDECREF(self->unknown);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* kind(text) -> one of the kinds given (see above). */
static PyObject *
StreamKind_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    StreamKind *self = (StreamKind *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "StreamKind takes (text)");
        return NULL;
    }
    PyObject *text = args[0];
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const char *t = (const char *)PyUnicode_1BYTE_DATA(text);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    const char *name;
    Py_ssize_t name_len = envelope_stream(t, len, &name);
    if (name_len < 0)
        return Py_NewRef(self->unknown);
    Py_ssize_t trade_len = PyUnicode_GET_LENGTH(self->trade_stream);
    if (name_len == trade_len
            && memcmp(name, PyUnicode_1BYTE_DATA(self->trade_stream), (size_t)trade_len) == 0)
        return Py_NewRef(self->trade);
    if (is_depth_stream(self->depth_prefix, name, name_len))
        return Py_NewRef(self->depth);
    return Py_NewRef(self->skip);
}

static PyTypeObject StreamKindType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.StreamKind",
    .tp_basicsize = sizeof(StreamKind),
    .tp_dealloc = (destructor)StreamKind_dealloc,
    .tp_vectorcall_offset = offsetof(StreamKind, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_methods = Shared_methods,
    .tp_doc = "StreamKind(depth_prefix, trade_stream, depth, trade, skip, unknown): what a "
              "Binance combined-stream frame carries; call (text) -> a kind, or None.",
    .tp_new = StreamKind_new,
};

#undef ENVELOPE_HEAD
#undef DATA_KEY
#undef ASKS_KEY

/* ------------------------------------------------------------------ BookPart
 *
 * One part of a split depth update, booked with the simulated venue's pass over it, in one
 * call: adapters.sim_venue.SimVenue.on_market(part) (its queue pass, for a BookDelta) and then
 * bot.book.OrderBook.apply(part, checked=True, cross_check=False), which bot.engine's
 * Engine._book_part runs in Python and which stay the reference. Then it tells where the
 * touch stands, so the engine's touch-first path skips what has nothing to do.
 *
 * It answers "not mine" (None) with nothing changed unless the case is the plain one it was
 * written for: a valid book with compiled sides, a BookDelta of the symbol's levels, the
 * venue's orders (at most BOOK_PART_MAX_ORDERS) of its own _Order class with float prices and
 * queue positions, the trade quantity pending at our prices (``_traded``, at most as many
 * entries) keyed by (side, float price) with float values, finite numbers wherever the queue
 * rule computes, and no float overflow (where Python raises). tests/test_book_part.py holds
 * it to the Python.
 */

#define BOOK_PART_MAX_ORDERS 64

/* bot/_cdecide.c: each name's writable object slot in ``cls``, or -1 with an error. */
int decide_offsets_of(PyTypeObject *cls, const char *const *names, Py_ssize_t n,
                      Py_ssize_t *offsets);

static const char *const PART_BOOK_FIELDS[] = {"_bids", "_asks", "_invalid_reason", "symbol",
                                               "sequence", "last_update_ns", "updates"};
enum { PB_BIDS, PB_ASKS, PB_INVALID, PB_SYMBOL, PB_SEQUENCE, PB_LAST_UPDATE, PB_UPDATES, PB_N };
static const char *const PART_VENUE_FIELDS[] = {"_orders", "_traded", "_model", "_queue_power"};
enum { PV_ORDERS, PV_TRADED, PV_MODEL, PV_POWER, PV_N };
static const char *const PART_ORDER_FIELDS[] = {"side", "price", "queue_ahead"};
enum { PO_SIDE, PO_PRICE, PO_AHEAD, PO_N };
static const char *const PART_DELTA_FIELDS[] = {"symbol", "bids", "asks", "sequence",
                                                "ts_local_ns"};
enum { PD_SYMBOL, PD_BIDS, PD_ASKS, PD_SEQUENCE, PD_TS, PD_N };

typedef struct {
    PyObject_HEAD
    PyObject *book;
    PyObject *venue;
    PyTypeObject *order_cls;
    PyTypeObject *delta_cls;
    PyObject *buy;
    PyObject *sell;
    PyObject *queue_model;
    PyObject *one;
    Py_ssize_t book_off[PB_N];
    Py_ssize_t venue_off[PV_N];
    Py_ssize_t order_off[PO_N];
    Py_ssize_t delta_off[PD_N];
    vectorcallfunc vectorcall;
} BookPart;

#define PART_SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static PyObject *BookPart_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
BookPart_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"book", "venue", "order_cls", "delta_cls", "buy", "sell",
                             "queue_model", NULL};
    PyObject *book, *venue, *order_cls, *delta_cls, *buy, *sell, *queue_model;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!O!OOO", kwlist, &book, &venue,
                                     &PyType_Type, &order_cls, &PyType_Type, &delta_cls, &buy,
                                     &sell, &queue_model))
        return NULL;
    BookPart *self = (BookPart *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = BookPart_vectorcall;
#define KEEP(field, value) (Py_INCREF(value), self->field = (void *)(value))
    KEEP(book, book);
    KEEP(venue, venue);
    KEEP(order_cls, order_cls);
    KEEP(delta_cls, delta_cls);
    KEEP(buy, buy);
    KEEP(sell, sell);
    KEEP(queue_model, queue_model);
#undef KEEP
    if ((self->one = PyLong_FromLong(1)) == NULL
            || decide_offsets_of(Py_TYPE(book), PART_BOOK_FIELDS, PB_N, self->book_off) < 0
            || decide_offsets_of(Py_TYPE(venue), PART_VENUE_FIELDS, PV_N, self->venue_off) < 0
            || decide_offsets_of(self->order_cls, PART_ORDER_FIELDS, PO_N, self->order_off) < 0
            || decide_offsets_of(self->delta_cls, PART_DELTA_FIELDS, PD_N, self->delta_off) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/*
 * The kernel is part of a reference cycle (engine -> kernel -> venue -> its sink, the engine's
 * bound method), so it takes part in the cyclic GC: otherwise the cycle could never be freed.
 */
static int
BookPart_traverse(BookPart *self, visitproc visit, void *arg)
{
    Py_VISIT(self->book);
    Py_VISIT(self->venue);
    Py_VISIT(self->order_cls);
    Py_VISIT(self->delta_cls);
    Py_VISIT(self->buy);
    Py_VISIT(self->sell);
    Py_VISIT(self->queue_model);
    return 0;
}

static int
BookPart_clear(BookPart *self)
{
    Py_CLEAR(self->book);
    Py_CLEAR(self->venue);
    Py_CLEAR(self->order_cls);
    Py_CLEAR(self->delta_cls);
    Py_CLEAR(self->buy);
    Py_CLEAR(self->sell);
    Py_CLEAR(self->queue_model);
    Py_CLEAR(self->one);
    return 0;
}

static void
BookPart_dealloc(BookPart *self)
{
    PyObject_GC_UnTrack(self);
    BookPart_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/*
 * bot.native.level_qty for the levels of a part: 1 with *qty the quantity of the last level at
 * ``price``, 0 when none is at it, -1 (not mine) for levels that are neither a LevelRun nor a
 * tuple of (float, float) tuples.
 */
static int
part_level_qty(PyObject *levels, double price, double *qty)
{
    if (Py_IS_TYPE(levels, &LevelRunType)) {
        LevelRun *run = (LevelRun *)levels;
        for (Py_ssize_t k = run->n - 1; k >= 0; k--) {
            if (run->price[k] == price) {
                *qty = run->qty[k];
                return 1;
            }
        }
        return 0;
    }
    if (!PyTuple_CheckExact(levels))
        return -1;
    for (Py_ssize_t i = PyTuple_GET_SIZE(levels) - 1; i >= 0; i--) {
        PyObject *level = PyTuple_GET_ITEM(levels, i);
        if (!PyTuple_CheckExact(level) || PyTuple_GET_SIZE(level) != 2)
            return -1;
        PyObject *p = PyTuple_GET_ITEM(level, 0), *q = PyTuple_GET_ITEM(level, 1);
        if (!PyFloat_CheckExact(p) || !PyFloat_CheckExact(q))
            return -1;
        if (PyFloat_AS_DOUBLE(p) == price) {
            *qty = PyFloat_AS_DOUBLE(q);
            return 1;
        }
    }
    return 0;
}

/* The quantity at signed ``key`` of a side, 0.0 without a level (BookSide.get). */
static inline double
side_qty(const BookSide *side, double key)
{
    Py_ssize_t i = lower_bound(side->keys, side->n, key);
    return i < side->n && side->keys[i] == key ? side->qty[i] : 0.0;
}

/* x ** n as Python computes it for finite x > 0 and finite n: 0, or -1 where Python raises. */
static inline int
part_pow(double x, double n, double *out)
{
    double r = pow(x, n);
    if (isinf(r))
        return -1; /* OverflowError */
    *out = r;
    return 0;
}

/*
 * part(delta, low, high) -> None | 0 | 1 | 2. None: not mine, nothing changed. Otherwise the
 * venue has seen the part and the book holds it; then 0: the touch is not final (best bid
 * below ``low`` or best ask above ``high``); 1: it is final, the book is not crossed and no
 * order of the venue is crossed by it (SimVenue.after_book has nothing to fill); 2: final, but
 * crossed or crossing an order (the engine's checks run).
 */
static PyObject *
BookPart_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    BookPart *self = (BookPart *)callable;
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "BookPart takes (delta, low, high)");
        return NULL;
    }
    PyObject *delta = args[0];
    if (self->book == NULL || self->venue == NULL) /* cleared by the GC */
        Py_RETURN_NONE;
    if (!Py_IS_TYPE(delta, self->delta_cls) || !PyFloat_CheckExact(args[1])
            || !PyFloat_CheckExact(args[2]))
        Py_RETURN_NONE;
    double low = PyFloat_AS_DOUBLE(args[1]), high = PyFloat_AS_DOUBLE(args[2]);
    PyObject *book = self->book;
    const Py_ssize_t *bo = self->book_off, *vo = self->venue_off, *oo = self->order_off,
                     *dlo = self->delta_off;
    PyObject *bids_obj = PART_SLOT(book, bo[PB_BIDS]), *asks_obj = PART_SLOT(book, bo[PB_ASKS]);
    PyObject *invalid = PART_SLOT(book, bo[PB_INVALID]);
    PyObject *symbol = PART_SLOT(book, bo[PB_SYMBOL]);
    PyObject *updates = PART_SLOT(book, bo[PB_UPDATES]);
    PyObject *d_symbol = PART_SLOT(delta, dlo[PD_SYMBOL]);
    PyObject *bids = PART_SLOT(delta, dlo[PD_BIDS]), *asks = PART_SLOT(delta, dlo[PD_ASKS]);
    PyObject *sequence = PART_SLOT(delta, dlo[PD_SEQUENCE]);
    PyObject *ts = PART_SLOT(delta, dlo[PD_TS]);
    if (bids_obj == NULL || asks_obj == NULL || !Py_IS_TYPE(bids_obj, &BookSideType)
            || !Py_IS_TYPE(asks_obj, &BookSideType) || invalid == NULL
            || !PyUnicode_CheckExact(invalid) || PyUnicode_GET_LENGTH(invalid) != 0
            || updates == NULL || !PyLong_CheckExact(updates) || symbol == NULL
            || d_symbol == NULL || bids == NULL || asks == NULL || sequence == NULL
            || ts == NULL)
        Py_RETURN_NONE;
    if (d_symbol != symbol) {
        if (!PyUnicode_CheckExact(symbol) || !PyUnicode_CheckExact(d_symbol))
            Py_RETURN_NONE;
        int same = PyUnicode_Compare(symbol, d_symbol);
        if (same == -1 && PyErr_Occurred())
            return NULL;
        if (same != 0)
            Py_RETURN_NONE; /* apply raises DataError */
    }
    BookSide *bside = (BookSide *)bids_obj, *aside = (BookSide *)asks_obj;

    /* The venue's pass (SimVenue.on_market -> _on_depth): computed first, stored once sure. */
    PyObject *orders = PART_SLOT(self->venue, vo[PV_ORDERS]);
    PyObject *traded = PART_SLOT(self->venue, vo[PV_TRADED]);
    PyObject *model = PART_SLOT(self->venue, vo[PV_MODEL]);
    if (orders == NULL || !PyDict_CheckExact(orders) || traded == NULL
            || !PyDict_CheckExact(traded) || model == NULL)
        Py_RETURN_NONE;
    Py_ssize_t n_orders = PyDict_GET_SIZE(orders);
    if (n_orders > BOOK_PART_MAX_ORDERS)
        Py_RETURN_NONE;
    int clear_traded = 0;
    PyObject *moved[BOOK_PART_MAX_ORDERS];     /* orders whose queue_ahead is set */
    PyObject *new_ahead[BOOK_PART_MAX_ORDERS]; /* the values set */
    PyObject *restated[BOOK_PART_MAX_ORDERS];  /* _traded keys the part restates (references) */
    Py_ssize_t n_moved = 0, n_restated = 0;
    PyObject *not_mine = NULL; /* what release: answers (NULL: an exception is set) */
    if (n_orders == 0 || model != self->queue_model) {
        clear_traded = PyDict_GET_SIZE(traded) > 0;
    }
    else {
        if (PyDict_GET_SIZE(traded) > BOOK_PART_MAX_ORDERS)
            Py_RETURN_NONE;
        PyObject *power_obj = PART_SLOT(self->venue, vo[PV_POWER]);
        if (power_obj == NULL || !(PyFloat_CheckExact(power_obj) || PyLong_CheckExact(power_obj)))
            Py_RETURN_NONE;
        double power;
        if (as_double(power_obj, &power) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *order;
        int mine = isfinite(power);
        while (mine && PyDict_Next(orders, &pos, &key, &order)) {
            if (!Py_IS_TYPE(order, self->order_cls)) {
                mine = 0;
                break;
            }
            PyObject *side = PART_SLOT(order, oo[PO_SIDE]);
            PyObject *price_obj = PART_SLOT(order, oo[PO_PRICE]);
            PyObject *ahead_obj = PART_SLOT(order, oo[PO_AHEAD]);
            if (side == NULL || (side != self->buy && side != self->sell) || price_obj == NULL
                    || !PyFloat_CheckExact(price_obj) || ahead_obj == NULL
                    || !PyFloat_CheckExact(ahead_obj)) {
                mine = 0;
                break;
            }
            int is_buy = side == self->buy;
            double price = PyFloat_AS_DOUBLE(price_obj);
            double after;
            int found = part_level_qty(is_buy ? bids : asks, price, &after);
            if (found < 0) {
                mine = 0;
                break;
            }
            if (found == 0)
                continue; /* the delta leaves our level as it was */
            /* _update_queue(order, after, traded.get((side, price), 0.0)) */
            double ahead = PyFloat_AS_DOUBLE(ahead_obj);
            if (ahead <= 0.0)
                continue;
            double pending = 0.0;
            if (PyDict_GET_SIZE(traded) > 0) {
                PyObject *key = PyTuple_Pack(2, side, price_obj);
                if (key == NULL)
                    goto release;
                PyObject *value = PyDict_GetItemWithError(traded, key); /* borrowed */
                Py_DECREF(key);
                if (value == NULL && PyErr_Occurred())
                    goto release;
                if (value != NULL) {
                    if (!PyFloat_CheckExact(value)) {
                        mine = 0;
                        break;
                    }
                    pending = PyFloat_AS_DOUBLE(value);
                }
            }
            BookSide *at = is_buy ? bside : aside;
            double level = side_qty(at, at->sign * price) - pending;
            if (!isfinite(ahead) || !isfinite(after) || !isfinite(level)) {
                mine = 0;
                break;
            }
            double canceled = level - after;
            if (canceled > 0.0) {
                double f_front, f_back = 0.0;
                if (part_pow(ahead, power, &f_front) < 0
                        || (level > ahead && part_pow(level - ahead, power, &f_back) < 0)) {
                    mine = 0;
                    break;
                }
                double total = f_back + f_front;
                if (total > 0.0)
                    ahead -= canceled * f_back / total;
            }
            /* min(max(ahead, 0.0), after): each keeps its first argument unless beaten */
            double kept = 0.0 > ahead ? 0.0 : ahead;
            kept = after < kept ? after : kept;
            PyObject *value = PyFloat_FromDouble(kept);
            if (value == NULL)
                goto release;
            moved[n_moved] = order;
            new_ahead[n_moved++] = value;
        }
        /* Then the trade counts at levels the part restates are forgotten (_on_depth). */
        pos = 0;
        PyObject *count_obj;
        while (mine && PyDict_Next(traded, &pos, &key, &count_obj)) {
            PyObject *k_side = PyTuple_CheckExact(key) && PyTuple_GET_SIZE(key) == 2
                ? PyTuple_GET_ITEM(key, 0) : NULL;
            PyObject *k_price = k_side != NULL ? PyTuple_GET_ITEM(key, 1) : NULL;
            if (k_side == NULL || (k_side != self->buy && k_side != self->sell)
                    || !PyFloat_CheckExact(k_price)) {
                mine = 0;
                break;
            }
            double ignored;
            int found = part_level_qty(k_side == self->buy ? bids : asks,
                                       PyFloat_AS_DOUBLE(k_price), &ignored);
            if (found < 0) {
                mine = 0;
                break;
            }
            if (found) {
                Py_INCREF(key);
                restated[n_restated++] = key;
            }
        }
        if (!mine) {
            not_mine = Py_None;
            goto release;
        }
    }
    /* Sure now: store the queue positions, then book the part (OrderBook.apply). */
    for (Py_ssize_t i = 0; i < n_moved; i++) {
        PyObject **slot = &PART_SLOT(moved[i], oo[PO_AHEAD]);
        PyObject *old = *slot;
        *slot = new_ahead[i]; /* the reference made above */
        Py_XDECREF(old);
    }
    if (clear_traded)
        PyDict_Clear(traded);
    int deleted = 0;
    for (Py_ssize_t i = 0; i < n_restated; i++) {
        /* keys of a side and a float: hashing them cannot fail, and each is present */
        if (deleted == 0)
            deleted = PyDict_DelItem(traded, restated[i]);
        Py_DECREF(restated[i]);
    }
    if (deleted < 0)
        return NULL;
    PyObject *done = BookSide_update(bside, bids);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    if ((done = BookSide_update(aside, asks)) == NULL)
        return NULL;
    Py_DECREF(done);
    PyObject *count = PyNumber_Add(updates, self->one);
    if (count == NULL)
        return NULL;
#define PUT(field, value)                                                                       \
    do {                                                                                        \
        PyObject **slot_ = &PART_SLOT(book, bo[field]);                                         \
        PyObject *old_ = *slot_;                                                                \
        Py_INCREF(value);                                                                       \
        *slot_ = (value);                                                                       \
        Py_XDECREF(old_);                                                                       \
    } while (0)
    PUT(PB_SEQUENCE, sequence);
    PUT(PB_LAST_UPDATE, ts);
    PUT(PB_UPDATES, count);
#undef PUT
    Py_DECREF(count);

    /* Where the touch stands (book.touch(); nan for a side with no level). */
    double bid = bside->n ? bside->keys[bside->n - 1] : Py_NAN;
    double ask = -(aside->n ? aside->keys[aside->n - 1] : Py_NAN);
    if (!(bid >= low && ask <= high))
        return PyLong_FromLong(0);
    if (bid >= ask) /* OrderBook.check_crossed */
        return PyLong_FromLong(2);
    /* SimVenue.after_book: a BUY fills once the best ask is at or below it, a SELL once the
     * best bid is at or above it. The orders were checked above unless the model is not the
     * queue model: check them here. */
    Py_ssize_t pos = 0;
    PyObject *key, *order;
    while (PyDict_Next(orders, &pos, &key, &order)) {
        if (!Py_IS_TYPE(order, self->order_cls))
            return PyLong_FromLong(2);
        PyObject *side = PART_SLOT(order, oo[PO_SIDE]);
        PyObject *price_obj = PART_SLOT(order, oo[PO_PRICE]);
        if (side == NULL || price_obj == NULL || !PyFloat_CheckExact(price_obj))
            return PyLong_FromLong(2);
        double price = PyFloat_AS_DOUBLE(price_obj);
        if (side == self->buy ? ask <= price : bid >= price)
            return PyLong_FromLong(2);
    }
    return PyLong_FromLong(1);

release: /* not mine (None), or an exception before anything was stored (NULL) */
    for (Py_ssize_t i = 0; i < n_moved; i++)
        Py_DECREF(new_ahead[i]);
    for (Py_ssize_t i = 0; i < n_restated; i++)
        Py_DECREF(restated[i]);
    Py_XINCREF(not_mine);
    return not_mine;
}

static PyTypeObject BookPartType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.BookPart",
    .tp_basicsize = sizeof(BookPart),
    .tp_dealloc = (destructor)BookPart_dealloc,
    .tp_vectorcall_offset = offsetof(BookPart, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)BookPart_traverse,
    .tp_clear = (inquiry)BookPart_clear,
    .tp_doc = "BookPart(book, venue, order_cls, delta_cls, buy, sell, queue_model): "
              "SimVenue.on_market(part) then OrderBook.apply(part, checked=True, "
              "cross_check=False) for one part of a split update; call (delta, low, high) -> "
              "None (not mine) | 0 (touch not final) | 1 (final, nothing to check) | 2.",
    .tp_new = BookPart_new,
};

static PyMethodDef cbook_functions[] = {
    {"nth_bracket", (PyCFunction)(void (*)(void))cbook_nth_bracket, METH_FASTCALL,
     "Index of the n-th '[' of text[1:] from the end or the start, or -1."},
    {"level_qty", (PyCFunction)(void (*)(void))cbook_level_qty, METH_FASTCALL,
     "Quantity of the last (price, qty) level at price, or None."},
    {"count_through", (PyCFunction)(void (*)(void))cbook_count_through, METH_FASTCALL,
     "Levels from one end of a raw level array whose price reaches bound."},
    {"parse_levels", (PyCFunction)cbook_parse_levels, METH_O,
     "Every level of a level array, as a tuple of (price, qty)."},
    {"parse_run", (PyCFunction)cbook_parse_run, METH_O,
     "Every level of a level array, as a LevelRun."},
    {"split_levels", (PyCFunction)(void (*)(void))cbook_split_levels, METH_FASTCALL,
     "The count levels at one end of a level array, the boundary price and the raw rest."},
    {"split_run", (PyCFunction)(void (*)(void))cbook_split_run, METH_FASTCALL,
     "split_levels with the levels read as a LevelRun."},
    {"nearest_at_end", (PyCFunction)(void (*)(void))cbook_nearest_at_end, METH_FASTCALL,
     "Whether a side's levels nearest the touch come last in its array."},
    {"cut_depth", (PyCFunction)cbook_cut_depth, METH_O,
     "A Binance depth diff's fields and level-array spans in its compact layout, or None."},
    {"split_depth", (PyCFunction)(void (*)(void))cbook_split_depth, METH_FASTCALL,
     "A compact Binance depth diff's fields and its level arrays split, or None."},
    {NULL, NULL, 0, NULL},
};

/* bot/_cdecide.c: Maker and OrderDiff, the decision path. */
int decide_init(PyObject *module);

static struct PyModuleDef cbook_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bot._cbook",
    .m_doc = "Compiled order-book side (see bot.book.PyBookSide for the reference).",
    .m_size = -1,
    .m_methods = cbook_functions,
};

PyMODINIT_FUNC
PyInit__cbook(void)
{
    if (PyType_Ready(&BookSideType) < 0 || PyType_Ready(&LevelRunType) < 0)
        return NULL;
    if (open_bracket == NULL && (open_bracket = PyUnicode_InternFromString("[")) == NULL)
        return NULL;
    if (close_bracket == NULL && (close_bracket = PyUnicode_InternFromString("]")) == NULL)
        return NULL;
    if (float_zero == NULL && (float_zero = PyFloat_FromDouble(0.0)) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&cbook_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&BookSideType);
    if (PyModule_AddObject(module, "BookSide", (PyObject *)&BookSideType) < 0) {
        Py_DECREF(&BookSideType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&LevelRunType);
    if (PyModule_AddObject(module, "LevelRun", (PyObject *)&LevelRunType) < 0) {
        Py_DECREF(&LevelRunType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddType(module, &BookPartType) < 0
            || PyModule_AddType(module, &DepthRouteType) < 0
            || PyModule_AddType(module, &StreamKindType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (decide_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
