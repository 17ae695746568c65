/*
 * The decision path in C, part of bot._cbook (the module's init calls decide_init).
 *
 * Each kernel computes the plain case of one Python step, which stays the reference: whenever
 * an input is not the plain case it was written for (a value that is not a float, a result the
 * Python would reach by another rule, an object of an unexpected class, more quotes or levels
 * than it holds, an overflow) it answers "not mine" and the Python code runs. Nothing is
 * changed before that answer is certain.
 *
 * Maker: builds an instance of a slotted dataclass from positional values by storing them in
 * its slots, as bot.frozen.fast_init's __init__ does through each slot's descriptor, without
 * a Python frame. bot.frozen.maker() offers it only for classes whose __init__ does nothing
 * else (no __post_init__); for those, Maker(cls, names)(*values) equals cls(*values).
 *
 * OrderDiff: bot.orders.OrderManager.diff on the manager's own dict of live orders; None sends
 * the manager to OrderManager._py_diff (tests/test_orders_kernel.py).
 *
 * GateCheck: whether risk.gate.RiskGate.check would pass the desired quotes untouched, and
 * whether RiskGate.admit would let every command through (tests/test_risk_kernel.py).
 *
 * ASQuote: strategies.avellaneda_stoikov.AvellanedaStoikov.quote with its ladder
 * (tests/test_strategies_kernel.py).
 *
 * Decide: bot.engine.Engine._requote's steps in one call (quote, check, live quantities, diff,
 * admission), built on the three kernels' cores; None sends the engine to the steps one by one
 * (tests/test_decide_kernel.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_FIELDS 16

/* ------------------------------------------------------------------ slots */

/* The slot offset of field ``name`` of ``cls`` (a writable object slot), or -1 with an error. */
static Py_ssize_t
slot_offset(PyTypeObject *cls, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)cls, name);
    if (descr == NULL)
        return -1;
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)
            && PyType_IsSubtype(cls, ((PyMemberDescrObject *)descr)->d_common.d_type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            offset = member->offset;
    }
    Py_DECREF(descr);
    if (offset < 0)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable object slot", cls->tp_name, name);
    return offset;
}

/* Whether instances of ``cls`` can be made by tp_alloc and filling slots (object.__new__). */
static int
check_plain_class(PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "expected a class");
        return -1;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_alloc != PyType_GenericAlloc) {
        PyErr_Format(PyExc_TypeError, "%s has its own __new__ or allocator", type->tp_name);
        return -1;
    }
    return 0;
}

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* A new instance of ``cls`` with ``values[i]`` in the slot at ``offsets[i]``. */
static PyObject *
build(PyTypeObject *cls, const Py_ssize_t *offsets, Py_ssize_t n, PyObject *const *values)
{
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(values[i]);
        SLOT(obj, offsets[i]) = values[i];
    }
    return obj;
}

/* Replace the value in a slot (holding a reference or NULL) with ``value``. */
static inline void
set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(obj, offset);
    Py_INCREF(value);
    SLOT(obj, offset) = value;
    Py_XDECREF(old);
}

/* Resolve ``n`` field names into slot offsets of ``cls``. */
static int
offsets_of(PyTypeObject *cls, const char *const *names, Py_ssize_t n, Py_ssize_t *offsets)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((offsets[i] = slot_offset(cls, names[i])) < 0)
            return -1;
    }
    return 0;
}

/* offsets_of for bot/_cbook.c (BookPart reads the book's, the venue's and orders' slots). */
int
decide_offsets_of(PyTypeObject *cls, const char *const *names, Py_ssize_t n, Py_ssize_t *offsets)
{
    return offsets_of(cls, names, n, offsets);
}

/* ------------------------------------------------------------------ Maker */

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t n;
    Py_ssize_t offsets[MAX_FIELDS];
    vectorcallfunc vectorcall;
} Maker;

static PyObject *
Maker_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Maker *self = (Maker *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_Format(PyExc_TypeError, "making %s takes no keyword arguments", self->cls->tp_name);
        return NULL;
    }
    if (nargs != self->n) {
        PyErr_Format(PyExc_TypeError, "making %s takes %zd arguments (%zd given)",
                     self->cls->tp_name, self->n, nargs);
        return NULL;
    }
    return build(self->cls, self->offsets, self->n, args);
}

static PyObject *
Maker_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cls", "fields", NULL};
    PyObject *cls, *fields;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!", kwlist, &cls, &PyTuple_Type, &fields))
        return NULL;
    if (check_plain_class(cls) < 0)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n > MAX_FIELDS) {
        PyErr_Format(PyExc_ValueError, "at most %d fields", MAX_FIELDS);
        return NULL;
    }
    Maker *self = (Maker *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        if (text == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "field names must be str");
            Py_DECREF(self);
            return NULL;
        }
        if ((self->offsets[i] = slot_offset((PyTypeObject *)cls, text)) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    Py_INCREF(cls);
    self->cls = (PyTypeObject *)cls;
    self->n = n;
    self->vectorcall = Maker_vectorcall;
    return (PyObject *)self;
}

static void
Maker_dealloc(Maker *self)
{
    Py_XDECREF(self->cls);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Maker_get_cls(Maker *self, void *closure)
{
    Py_INCREF(self->cls);
    return (PyObject *)self->cls;
}

static PyGetSetDef Maker_getset[] = {
    {"cls", (getter)Maker_get_cls, NULL, "The class this makes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MakerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.Maker",
    .tp_basicsize = sizeof(Maker),
    .tp_dealloc = (destructor)Maker_dealloc,
    .tp_vectorcall_offset = offsetof(Maker, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Maker(cls, fields): call with one value per field to make an instance of cls.",
    .tp_getset = Maker_getset,
    .tp_new = Maker_new,
};

/* ------------------------------------------------------------------ snapping */

/* A step prepared as bot.orders._grid: n steps is (n * m) / scale while |n| < limit. */
typedef struct {
    double step;
    double scale;
    int64_t m;
    int64_t limit;
} Grid;

#define EPS_STEPS 1e-9

/* bot.orders._floor_on / _ceil_on; 0 when the value is outside the exact one-division form
 * (the caller falls back to Python, which rounds or raises as the reference does). */
static inline int
snap_on(double value, const Grid *grid, int up, double *out)
{
    double n = up ? ceil(value / grid->step - EPS_STEPS) : floor(value / grid->step + EPS_STEPS);
    double limit = (double)grid->limit;
    if (!(-limit < n && n < limit))
        return 0;
    *out = (double)((int64_t)n * grid->m) / grid->scale;
    return 1;
}

static int
parse_grid(PyObject *spec, Grid *grid)
{
    /* (step, decimals, m, scale, limit), as bot.orders._grid returns it */
    double step, scale;
    int decimals;
    long long m, limit;
    if (!PyArg_ParseTuple(spec, "diLdL", &step, &decimals, &m, &scale, &limit))
        return -1;
    grid->step = step;
    grid->scale = scale;
    grid->m = m;
    grid->limit = limit;
    return 0;
}

/* ------------------------------------------------------------------ OrderDiff */

/* Field names, in the order of the offsets arrays below (and of the makers' values). */
static const char *const ORDER_FIELDS[] = {
    "client_order_id", "side", "price", "qty", "filled_qty", "state", "level", "sent_ts_ns"};
enum { O_ID, O_SIDE, O_PRICE, O_QTY, O_FILLED, O_STATE, O_LEVEL, O_SENT, O_N };
static const char *const QUOTE_FIELDS[] = {"side", "price", "qty", "level"};
enum { Q_SIDE, Q_PRICE, Q_QTY, Q_LEVEL, Q_N };
static const char *const PLACE_FIELDS[] = {
    "ts_ns", "client_order_id", "symbol", "side", "price", "qty", "post_only", "level"};
enum { P_N = 8 };
static const char *const CANCEL_FIELDS[] = {"ts_ns", "client_order_id", "symbol"};
enum { C_N = 3 };

#define MAX_TARGETS 32
#define MAX_CANCELS 64

typedef struct {
    PyObject_HEAD
    PyTypeObject *order_cls, *place_cls, *cancel_cls, *quote_cls;
    Py_ssize_t order_off[O_N], quote_off[Q_N], place_off[P_N], cancel_off[C_N];
    PyObject *pending_new, *pending_cancel, *buy;
    PyObject *symbol, *prefix, *post_only;
    int post_only_flag;
    double tick, price_tol, qty_tol, min_qty, min_notional;
    int64_t max_age_ns;
    Grid price_grid, qty_grid;
    vectorcallfunc vectorcall;
} OrderDiff;

static PyObject *OrderDiff_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
OrderDiff_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "order_cls", "place_cls", "cancel_cls", "quote_cls", "pending_new", "pending_cancel",
        "buy", "symbol", "prefix", "post_only", "tick", "price_grid", "qty_grid", "price_tol",
        "qty_tol", "min_qty", "min_notional", "max_age_ns", NULL};
    PyObject *order_cls, *place_cls, *cancel_cls, *quote_cls, *pending_new, *pending_cancel;
    PyObject *buy, *symbol, *prefix, *post_only, *price_grid, *qty_grid;
    double tick, price_tol, qty_tol, min_qty, min_notional;
    long long max_age_ns;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "OOOOOOOUUO!dO!O!ddddL", kwlist, &order_cls, &place_cls, &cancel_cls,
            &quote_cls, &pending_new, &pending_cancel, &buy, &symbol, &prefix, &PyBool_Type,
            &post_only, &tick, &PyTuple_Type, &price_grid, &PyTuple_Type, &qty_grid,
            &price_tol, &qty_tol, &min_qty, &min_notional, &max_age_ns))
        return NULL;
    if (check_plain_class(order_cls) < 0 || check_plain_class(place_cls) < 0
            || check_plain_class(cancel_cls) < 0 || !PyType_Check(quote_cls)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "quote_cls must be a class");
        return NULL;
    }
    OrderDiff *self = (OrderDiff *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
#define KEEP(field, value) (Py_INCREF(value), self->field = (value))
    KEEP(order_cls, (PyTypeObject *)order_cls);
    KEEP(place_cls, (PyTypeObject *)place_cls);
    KEEP(cancel_cls, (PyTypeObject *)cancel_cls);
    KEEP(quote_cls, (PyTypeObject *)quote_cls);
    KEEP(pending_new, pending_new);
    KEEP(pending_cancel, pending_cancel);
    KEEP(buy, buy);
    KEEP(symbol, symbol);
    KEEP(prefix, prefix);
    KEEP(post_only, post_only);
#undef KEEP
    self->post_only_flag = post_only == Py_True;
    self->tick = tick;
    self->price_tol = price_tol;
    self->qty_tol = qty_tol;
    self->min_qty = min_qty;
    self->min_notional = min_notional;
    self->max_age_ns = max_age_ns;
    if (offsets_of(self->order_cls, ORDER_FIELDS, O_N, self->order_off) < 0
            || offsets_of(self->quote_cls, QUOTE_FIELDS, Q_N, self->quote_off) < 0
            || offsets_of(self->place_cls, PLACE_FIELDS, P_N, self->place_off) < 0
            || offsets_of(self->cancel_cls, CANCEL_FIELDS, C_N, self->cancel_off) < 0
            || parse_grid(price_grid, &self->price_grid) < 0
            || parse_grid(qty_grid, &self->qty_grid) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->vectorcall = OrderDiff_vectorcall;
    return (PyObject *)self;
}

static void
OrderDiff_dealloc(OrderDiff *self)
{
    Py_XDECREF(self->order_cls);
    Py_XDECREF(self->place_cls);
    Py_XDECREF(self->cancel_cls);
    Py_XDECREF(self->quote_cls);
    Py_XDECREF(self->pending_new);
    Py_XDECREF(self->pending_cancel);
    Py_XDECREF(self->buy);
    Py_XDECREF(self->symbol);
    Py_XDECREF(self->prefix);
    Py_XDECREF(self->post_only);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef struct {
    PyObject *side;   /* borrowed from the quote */
    PyObject *level;  /* borrowed from the quote */
    double price, qty;
    int claimed;
} Target;

/* A float field of a slotted object, or 0 when it is missing or not exactly a float. */
static inline int
float_slot(PyObject *obj, Py_ssize_t offset, double *out)
{
    PyObject *value = SLOT(obj, offset);
    if (value == NULL || !PyFloat_CheckExact(value))
        return 0;
    *out = PyFloat_AS_DOUBLE(value);
    return 1;
}

/* Snap, clamp and filter one ladder into ``targets`` (OrderManager._add_targets); 0 to fall
 * back. */
static int
add_targets(OrderDiff *self, PyObject *quotes, double bid_cap, double ask_floor,
            Target *targets, Py_ssize_t *count)
{
    if (!PyTuple_CheckExact(quotes))
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(quotes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *quote = PyTuple_GET_ITEM(quotes, i);
        if (Py_TYPE(quote) != self->quote_cls)
            return 0;
        double price, qty;
        PyObject *side = SLOT(quote, self->quote_off[Q_SIDE]);
        PyObject *level = SLOT(quote, self->quote_off[Q_LEVEL]);
        /* Levels are exact ints: comparing them below runs no Python code while the dict of
         * orders is being iterated. */
        if (side == NULL || level == NULL || !PyLong_CheckExact(level)
                || !float_slot(quote, self->quote_off[Q_PRICE], &price)
                || !float_slot(quote, self->quote_off[Q_QTY], &qty))
            return 0;
        if (!(0.0 < price && price < INFINITY && 0.0 < qty && qty < INFINITY))
            continue;
        double snapped;
        if (side == self->buy) {
            if (!snap_on(price, &self->price_grid, 0, &snapped))
                return 0;
            price = bid_cap < snapped ? bid_cap : snapped;  /* min(snapped, bid_cap) */
        }
        else {
            if (!snap_on(price, &self->price_grid, 1, &snapped))
                return 0;
            price = ask_floor > snapped ? ask_floor : snapped;  /* max(snapped, ask_floor) */
        }
        if (!snap_on(qty, &self->qty_grid, 0, &qty))
            return 0;
        if (price <= 0.0 || qty <= 0.0 || qty < self->min_qty || price * qty < self->min_notional)
            continue;
        if (*count >= MAX_TARGETS)
            return 0;
        Target *t = &targets[(*count)++];
        t->side = side;
        t->level = level;
        t->price = price;
        t->qty = qty;
        t->claimed = 0;
    }
    return 1;
}

static PyObject *
make_cancel(OrderDiff *self, PyObject *ts, PyObject *order)
{
    PyObject *values[C_N] = {ts, SLOT(order, self->order_off[O_ID]), self->symbol};
    return build(self->cancel_cls, self->cancel_off, C_N, values);
}

/* The client order id: prefix then the decimal id, as f"{prefix}{id}" gives. An ASCII prefix
 * (the usual case) is copied straight into a new string: PyUnicode_FromFormat parses its
 * format on every call and was the dearest part of placing an order. */
static PyObject *
client_id(PyObject *prefix, long long id)
{
    if (id < 0 || !PyUnicode_IS_ASCII(prefix))
        return PyUnicode_FromFormat("%U%lld", prefix, id);
    char digits[24];
    Py_ssize_t n = 0;
    unsigned long long v = (unsigned long long)id;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    Py_ssize_t plen = PyUnicode_GET_LENGTH(prefix);
    PyObject *out = PyUnicode_New(plen + n, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *data = PyUnicode_1BYTE_DATA(out);
    memcpy(data, PyUnicode_1BYTE_DATA(prefix), (size_t)plen);
    memcpy(data + plen, digits + sizeof digits - n, (size_t)n);
    return out;
}

/* Place one target: a new live order in ``orders`` and the PlaceOrder command. */
static PyObject *
make_place(OrderDiff *self, PyObject *orders, const Target *t, PyObject *ts, long long id)
{
    PyObject *cid = client_id(self->prefix, id);
    PyObject *price = PyFloat_FromDouble(t->price);
    PyObject *qty = PyFloat_FromDouble(t->qty);
    PyObject *zero = PyFloat_FromDouble(0.0);
    PyObject *command = NULL;
    if (cid != NULL && price != NULL && qty != NULL && zero != NULL) {
        PyObject *order_values[O_N] = {cid, t->side, price, qty, zero, self->pending_new,
                                       t->level, ts};
        PyObject *order = build(self->order_cls, self->order_off, O_N, order_values);
        if (order != NULL) {
            int failed = PyDict_SetItem(orders, cid, order);
            Py_DECREF(order);
            if (!failed) {
                PyObject *values[P_N] = {ts, cid, self->symbol, t->side, price, qty,
                                         self->post_only, t->level};
                command = build(self->place_cls, self->place_off, P_N, values);
            }
        }
    }
    Py_XDECREF(cid);
    Py_XDECREF(price);
    Py_XDECREF(qty);
    Py_XDECREF(zero);
    return command;
}

/*
 * The diff on the dict of live orders ``orders`` (ts: the event time as an int, ts_ns its
 * value): 1 with *commands_out (a new list) and *placed_out set, 0 when an input is not the
 * plain case (nothing has been changed), -1 with an error set.
 */
static int
diff_core(OrderDiff *self, PyObject *orders, PyObject *bids, PyObject *asks, double best_bid,
          double best_ask, PyObject *ts, long long ts_ns, long long next_id,
          PyObject **commands_out, Py_ssize_t *placed_out)
{
    int overflow = 0;
    double bid_cap = INFINITY, ask_floor = -INFINITY;
    if (self->post_only_flag) {
        if (isfinite(best_ask) && !snap_on(best_ask - self->tick, &self->price_grid, 0, &bid_cap))
            return 0;
        if (isfinite(best_bid) && !snap_on(best_bid + self->tick, &self->price_grid, 1, &ask_floor))
            return 0;
    }
    Target targets[MAX_TARGETS];
    Py_ssize_t n_targets = 0;
    if (!add_targets(self, bids, bid_cap, ask_floor, targets, &n_targets)
            || !add_targets(self, asks, bid_cap, ask_floor, targets, &n_targets))
        return 0;

    /* Plan: which live orders stay (claiming a target), which are cancelled. */
    PyObject *cancels[MAX_CANCELS];
    Py_ssize_t n_cancels = 0, pos = 0;
    PyObject *key, *order;
    const Py_ssize_t *off = self->order_off;
    while (PyDict_Next(orders, &pos, &key, &order)) {
        if (Py_TYPE(order) != self->order_cls)
            return 0;
        PyObject *state = SLOT(order, off[O_STATE]);
        if (state == self->pending_cancel)
            continue;
        PyObject *side = SLOT(order, off[O_SIDE]), *level = SLOT(order, off[O_LEVEL]);
        PyObject *sent = SLOT(order, off[O_SENT]);
        double price, qty, filled;
        if (state == NULL || side == NULL || level == NULL || sent == NULL
                || SLOT(order, off[O_ID]) == NULL || !PyLong_CheckExact(sent)
                || !PyLong_CheckExact(level)
                || !float_slot(order, off[O_PRICE], &price) || !float_slot(order, off[O_QTY], &qty)
                || !float_slot(order, off[O_FILLED], &filled))
            return 0;
        Py_ssize_t match = -1;
        for (Py_ssize_t i = 0; i < n_targets; i++) {
            Target *t = &targets[i];
            if (t->claimed || t->side != side)
                continue;
            int differs = PyObject_RichCompareBool(t->level, level, Py_NE);
            if (differs < 0)
                return -1;
            if (differs)
                continue;
            /* OrderManager._match: the first free target of the order's side and level */
            int price_ok = fabs(price - t->price) <= self->price_tol;
            int qty_ok = fabs(qty - t->qty) <= self->qty_tol
                         || fabs((qty - filled) - t->qty) <= self->qty_tol;
            int fresh = 1;
            if (self->max_age_ns != 0) {
                long long sent_ns = PyLong_AsLongLongAndOverflow(sent, &overflow), age;
                if (overflow || __builtin_sub_overflow(ts_ns, sent_ns, &age))
                    return 0;
                fresh = age <= self->max_age_ns;
            }
            if (price_ok && qty_ok && fresh)
                match = i;
            break;
        }
        if (match >= 0) {
            targets[match].claimed = 1;
        }
        else {
            if (n_cancels >= MAX_CANCELS)
                return 0;
            cancels[n_cancels++] = order;
        }
    }

    /* Act: cancels first, then the places, as the reference orders its commands. */
    PyObject *commands = PyList_New(0);
    if (commands == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n_cancels; i++) {
        set_slot(cancels[i], off[O_STATE], self->pending_cancel);
        PyObject *command = make_cancel(self, ts, cancels[i]);
        if (command == NULL || PyList_Append(commands, command) < 0) {
            Py_XDECREF(command);
            Py_DECREF(commands);
            return -1;
        }
        Py_DECREF(command);
    }
    Py_ssize_t placed = 0;
    for (Py_ssize_t i = 0; i < n_targets; i++) {
        if (targets[i].claimed)
            continue;
        PyObject *command = make_place(self, orders, &targets[i], ts, next_id + placed);
        if (command == NULL || PyList_Append(commands, command) < 0) {
            Py_XDECREF(command);
            Py_DECREF(commands);
            return -1;
        }
        Py_DECREF(command);
        placed++;
    }
    *commands_out = commands;
    *placed_out = placed;
    return 1;
}

/* diff(orders, bids, asks, best_bid, best_ask, ts_ns, next_id) -> (commands, placed) | None */
static PyObject *
OrderDiff_call(OrderDiff *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "diff takes 7 arguments");
        return NULL;
    }
    PyObject *orders = args[0], *ts = args[5];
    if (!PyDict_CheckExact(orders) || !PyFloat_CheckExact(args[3])
            || !PyFloat_CheckExact(args[4]) || !PyLong_CheckExact(ts)
            || !PyLong_CheckExact(args[6]))
        Py_RETURN_NONE;
    int overflow = 0;
    long long ts_ns = PyLong_AsLongLongAndOverflow(ts, &overflow);
    if (overflow)
        Py_RETURN_NONE;
    long long next_id = PyLong_AsLongLongAndOverflow(args[6], &overflow);
    if (overflow || next_id < 0 || next_id > (1LL << 60))
        Py_RETURN_NONE;
    PyObject *commands;
    Py_ssize_t placed;
    int done = diff_core(self, orders, args[1], args[2], PyFloat_AS_DOUBLE(args[3]),
                         PyFloat_AS_DOUBLE(args[4]), ts, ts_ns, next_id, &commands, &placed);
    if (done < 0)
        return NULL;
    if (done == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(Nn)", commands, placed);
}

/* OrderManager.live_qtys on its dict of live orders: 1, or 0 when an order is not plain. */
static int
live_qtys_core(OrderDiff *self, PyObject *orders, double *buys_out, double *sells_out)
{
    double buys = 0.0, sells = 0.0, qty, filled;
    Py_ssize_t pos = 0;
    PyObject *key, *order;
    const Py_ssize_t *off = self->order_off;
    while (PyDict_Next(orders, &pos, &key, &order)) {
        if (Py_TYPE(order) != self->order_cls || SLOT(order, off[O_SIDE]) == NULL
                || !float_slot(order, off[O_QTY], &qty)
                || !float_slot(order, off[O_FILLED], &filled))
            return 0;
        if (SLOT(order, off[O_SIDE]) == self->buy)
            buys += qty - filled;
        else
            sells += qty - filled;
    }
    *buys_out = buys;
    *sells_out = sells;
    return 1;
}

static PyObject *
OrderDiff_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "diff takes no keyword arguments");
        return NULL;
    }
    return OrderDiff_call((OrderDiff *)callable, args, PyVectorcall_NARGS(nargsf));
}

static PyTypeObject OrderDiffType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.OrderDiff",
    .tp_basicsize = sizeof(OrderDiff),
    .tp_dealloc = (destructor)OrderDiff_dealloc,
    .tp_vectorcall_offset = offsetof(OrderDiff, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "OrderDiff(**config)(orders, bids, asks, best_bid, best_ask, ts_ns, next_id): "
              "OrderManager.diff in C; (commands, places) or None for the Python reference.",
    .tp_new = OrderDiff_new,
};

/* ------------------------------------------------------------------ GateCheck */

/*
 * risk.gate.RiskGate.check's plain case: whether the desired quotes pass every rule as they
 * are. True means the gate would drop, move and trim nothing, deny nothing and change no state
 * (the approved quotes are the desired ones); False means the Python check must run (it may
 * also pass them: anything unusual goes there). The caller has already handled HALTED.
 */

static const char *const CTX_FIELDS[] = {
    "ts_ns", "mid", "best_bid", "best_ask", "tick_size", "book_valid", "last_book_ts_ns",
    "position", "live_buy_qty", "live_sell_qty"};
enum { X_TS, X_MID, X_BID, X_ASK, X_TICK, X_VALID, X_LAST, X_POS, X_LIVE_BUY, X_LIVE_SELL, X_N };
/* The PlaceOrder fields admits() reads, by their index in PLACE_FIELDS. */
enum { P_SIDE = 3, P_PRICE = 4, P_QTY = 5 };

typedef struct {
    PyObject_HEAD
    PyTypeObject *ctx_cls, *quote_cls, *place_cls, *cancel_cls;
    Py_ssize_t ctx_off[X_N], quote_off[Q_N], place_off[P_N];
    PyObject *buy, *sell;
    double cap, floor_ticks, floor_bps, band_bps, max_qty, max_notional;
    int enforce_touch;
    int64_t max_age_ns;
    vectorcallfunc vectorcall;
} GateCheck;

static PyObject *GateCheck_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
GateCheck_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "ctx_cls", "quote_cls", "place_cls", "cancel_cls", "buy", "sell", "max_inventory",
        "min_half_spread_ticks", "min_half_spread_bps", "enforce_touch", "price_band_bps",
        "max_order_qty", "max_order_notional", "max_book_age_ns", NULL};
    PyObject *ctx_cls, *quote_cls, *place_cls, *cancel_cls, *buy, *sell;
    double cap, floor_ticks, floor_bps, band_bps, max_qty, max_notional;
    int enforce_touch;
    long long max_age_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!OOdddpdddL", kwlist, &PyType_Type,
                                     &ctx_cls, &PyType_Type, &quote_cls, &PyType_Type,
                                     &place_cls, &PyType_Type, &cancel_cls, &buy, &sell, &cap,
                                     &floor_ticks, &floor_bps, &enforce_touch, &band_bps,
                                     &max_qty, &max_notional, &max_age_ns))
        return NULL;
    GateCheck *self = (GateCheck *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(ctx_cls);
    self->ctx_cls = (PyTypeObject *)ctx_cls;
    Py_INCREF(quote_cls);
    self->quote_cls = (PyTypeObject *)quote_cls;
    Py_INCREF(place_cls);
    self->place_cls = (PyTypeObject *)place_cls;
    Py_INCREF(cancel_cls);
    self->cancel_cls = (PyTypeObject *)cancel_cls;
    Py_INCREF(buy);
    self->buy = buy;
    Py_INCREF(sell);
    self->sell = sell;
    self->cap = cap;
    self->floor_ticks = floor_ticks;
    self->floor_bps = floor_bps;
    self->enforce_touch = enforce_touch;
    self->band_bps = band_bps;
    self->max_qty = max_qty;
    self->max_notional = max_notional;
    self->max_age_ns = max_age_ns;
    self->vectorcall = GateCheck_vectorcall;
    if (offsets_of(self->ctx_cls, CTX_FIELDS, X_N, self->ctx_off) < 0
            || offsets_of(self->quote_cls, QUOTE_FIELDS, Q_N, self->quote_off) < 0
            || offsets_of(self->place_cls, PLACE_FIELDS, P_N, self->place_off) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
GateCheck_dealloc(GateCheck *self)
{
    Py_XDECREF(self->ctx_cls);
    Py_XDECREF(self->quote_cls);
    Py_XDECREF(self->place_cls);
    Py_XDECREF(self->cancel_cls);
    Py_XDECREF(self->buy);
    Py_XDECREF(self->sell);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef struct {
    double mid, bid, ask, tick, position, floor;
} GateInputs;

/* Whether one ladder passes RiskGate._approve_side untouched (RiskGate._shape returns each
 * quote as it is and RiskGate._fit_to_cap keeps them all). */
static int
side_passes(GateCheck *self, PyObject *quotes, int buy, const GateInputs *in)
{
    if (!PyTuple_CheckExact(quotes))
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(quotes);
    if (n == 0)
        return 1;
    double exposure = buy ? in->position : -in->position;
    if (exposure >= self->cap)
        return 0;
    PyObject *side_obj = buy ? self->buy : self->sell;
    double total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *quote = PyTuple_GET_ITEM(quotes, i);
        double price, qty;
        if (Py_TYPE(quote) != self->quote_cls || SLOT(quote, self->quote_off[Q_SIDE]) != side_obj
                || !float_slot(quote, self->quote_off[Q_PRICE], &price)
                || !float_slot(quote, self->quote_off[Q_QTY], &qty))
            return 0;
        if (!(0.0 < price && price < INFINITY && 0.0 < qty && qty < INFINITY))
            return 0;
        if (in->floor > 0.0) {
            if (buy ? price > in->mid - in->floor : price < in->mid + in->floor)
                return 0;
        }
        if (self->enforce_touch && (buy ? price >= in->ask : price <= in->bid))
            return 0;
        if (self->band_bps < INFINITY && fabs(price - in->mid) / in->mid * 1e4 > self->band_bps)
            return 0;
        if (qty > self->max_qty || price * qty > self->max_notional)
            return 0;
        if (!(exposure + (total + qty) <= self->cap))
            return 0;
        total += qty;
    }
    return 1;
}

/*
 * check's plain case for a valid book, the context's values in ``in`` (its floor is set here)
 * and its times ``ts`` and ``last`` (exact ints): 1 when the quotes pass untouched, else 0.
 */
static int
gate_passes(GateCheck *self, PyObject *bids, PyObject *asks, PyObject *ts, PyObject *last,
            GateInputs *in, int reducing)
{
    /* RiskGate._update_inventory_state: the state stays what it is */
    if (isfinite(in->position) && (fabs(in->position) >= self->cap) != reducing)
        return 0;
    /* RiskGate._market_problem: none */
    if (self->max_age_ns) {
        int overflow = 0;
        long long now = PyLong_AsLongLongAndOverflow(ts, &overflow), age;
        if (overflow)
            return 0;
        long long then = PyLong_AsLongLongAndOverflow(last, &overflow);
        if (overflow || __builtin_sub_overflow(now, then, &age) || age > self->max_age_ns)
            return 0;
    }
    if (!(0.0 < in->mid && in->mid < INFINITY && 0.0 < in->bid && in->bid < INFINITY
          && 0.0 < in->ask && in->ask < INFINITY && 0.0 < in->tick && in->tick < INFINITY
          && -INFINITY < in->position && in->position < INFINITY))
        return 0;
    double by_ticks = self->floor_ticks * in->tick, by_bps = in->mid * self->floor_bps / 1e4;
    in->floor = by_bps > by_ticks ? by_bps : by_ticks;  /* max(by_ticks, by_bps) */
    return side_passes(self, bids, 1, in) && side_passes(self, asks, 0, in);
}

/* check(bids, asks, ctx, reducing) -> bool */
static PyObject *
GateCheck_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    GateCheck *self = (GateCheck *)callable;
    if (PyVectorcall_NARGS(nargsf) != 4 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "check takes 4 positional arguments");
        return NULL;
    }
    PyObject *ctx = args[2];
    if (Py_TYPE(ctx) != self->ctx_cls)
        Py_RETURN_FALSE;
    const Py_ssize_t *off = self->ctx_off;
    GateInputs in;
    PyObject *valid = SLOT(ctx, off[X_VALID]), *ts = SLOT(ctx, off[X_TS]);
    PyObject *last = SLOT(ctx, off[X_LAST]);
    if (valid != Py_True || ts == NULL || last == NULL || !PyLong_CheckExact(ts)
            || !PyLong_CheckExact(last) || !float_slot(ctx, off[X_MID], &in.mid)
            || !float_slot(ctx, off[X_BID], &in.bid) || !float_slot(ctx, off[X_ASK], &in.ask)
            || !float_slot(ctx, off[X_TICK], &in.tick)
            || !float_slot(ctx, off[X_POS], &in.position))
        Py_RETURN_FALSE;
    int reducing = PyObject_IsTrue(args[3]);
    if (reducing < 0)
        return NULL;
    return PyBool_FromLong(gate_passes(self, args[0], args[1], ts, last, &in, reducing));
}

static int admits_core(GateCheck *, PyObject *, double, double, double, int);

/*
 * admits(commands, ctx, halted) -> bool: whether RiskGate.admit would let every command
 * through, with no order-rate limit (the gate asks only then). Cancels always pass; a place
 * passes when not halted, with a positive finite price and qty, within the inventory cap
 * counting the live orders and the places before it in the batch.
 */
static PyObject *
GateCheck_admits(GateCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "admits takes 3 arguments");
        return NULL;
    }
    PyObject *commands = args[0], *ctx = args[1];
    if (!PyList_CheckExact(commands) || Py_TYPE(ctx) != self->ctx_cls)
        Py_RETURN_FALSE;
    int halted = PyObject_IsTrue(args[2]);
    if (halted < 0)
        return NULL;
    double position, live_buy, live_sell;
    const Py_ssize_t *off = self->ctx_off;
    if (!float_slot(ctx, off[X_POS], &position) || !float_slot(ctx, off[X_LIVE_BUY], &live_buy)
            || !float_slot(ctx, off[X_LIVE_SELL], &live_sell))
        Py_RETURN_FALSE;
    return PyBool_FromLong(admits_core(self, commands, position, live_buy, live_sell, halted));
}

/* admits() on the context's values. */
static int
admits_core(GateCheck *self, PyObject *commands, double position, double live_buy,
            double live_sell, int halted)
{
    double buy_base = position + live_buy, sell_base = -position + live_sell;
    double buys = 0.0, sells = 0.0;
    Py_ssize_t n = PyList_GET_SIZE(commands);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *command = PyList_GET_ITEM(commands, i);
        if (Py_TYPE(command) == self->cancel_cls)
            continue;
        double price, qty;
        if (Py_TYPE(command) != self->place_cls || halted
                || !float_slot(command, self->place_off[P_PRICE], &price)
                || !float_slot(command, self->place_off[P_QTY], &qty)
                || !(0.0 < qty && qty < INFINITY && 0.0 < price && price < INFINITY))
            return 0;
        PyObject *side = SLOT(command, self->place_off[P_SIDE]);
        if (side == self->buy) {
            if (!(buy_base + (buys + qty) <= self->cap))
                return 0;
            buys += qty;
        }
        else if (side == self->sell) {
            if (!(sell_base + (sells + qty) <= self->cap))
                return 0;
            sells += qty;
        }
        else {
            return 0;
        }
    }
    return 1;
}

static PyMethodDef GateCheck_methods[] = {
    {"admits", (PyCFunction)(void (*)(void))GateCheck_admits, METH_FASTCALL,
     "Whether RiskGate.admit would let every command through (no order-rate limit)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GateCheckType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.GateCheck",
    .tp_basicsize = sizeof(GateCheck),
    .tp_dealloc = (destructor)GateCheck_dealloc,
    .tp_vectorcall_offset = offsetof(GateCheck, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "GateCheck(**limits)(bids, asks, ctx, reducing): whether RiskGate.check would "
              "pass the quotes untouched, deny nothing and change no state.",
    .tp_methods = GateCheck_methods,
    .tp_new = GateCheck_new,
};

/* ------------------------------------------------------------------ ASQuote */

/*
 * strategies.avellaneda_stoikov.AvellanedaStoikov.quote with strategies.ladder.build_ladder,
 * for a MarketState whose inputs can be quoted (strategies.base.can_quote). Returns the
 * QuoteSet, or None for the Python method (unusable inputs, ints where floats belong, a
 * ladder of more levels than it holds, an overflow the reference would raise on).
 */

static const char *const STATE_FIELDS[] = {
    "ts_ns", "mid", "tick_size", "inventory", "sigma", "intensity_k"};
enum { S_TS, S_MID, S_TICK, S_INV, S_SIGMA, S_K, S_N };
static const char *const QUOTESET_FIELDS[] = {"bids", "asks", "reservation_price", "half_spread"};
enum { QS_N = 4 };

#define MAX_LEVELS 64

typedef struct {
    PyObject_HEAD
    PyTypeObject *state_cls, *quote_cls, *quoteset_cls;
    Py_ssize_t state_off[S_N], quote_off[Q_N], quoteset_off[QS_N];
    PyObject *buy, *sell;
    double gamma, order_qty, spacing, spacing_ticks, size_decay, max_inventory;
    double rolling_horizon_s;
    int levels, use_spacing_ticks, shaping, centre_mid, rolling;
    int64_t session_ns, origin_ns;
    vectorcallfunc vectorcall;
} ASQuote;

static PyObject *ASQuote_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
ASQuote_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "state_cls", "quote_cls", "quoteset_cls", "buy", "sell", "gamma", "order_qty",
        "levels", "spacing", "spacing_ticks", "size_decay", "inventory_shaping",
        "max_inventory", "centre_mid", "rolling", "rolling_horizon_s", "session_ns",
        "origin_ns", NULL};
    PyObject *state_cls, *quote_cls, *quoteset_cls, *buy, *sell, *spacing_ticks;
    double gamma, order_qty, spacing, size_decay, max_inventory, rolling_horizon_s;
    int levels, shaping, centre_mid, rolling;
    long long session_ns, origin_ns;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "OOOOOddidOdpdppdLL", kwlist, &state_cls, &quote_cls, &quoteset_cls,
            &buy, &sell, &gamma, &order_qty, &levels, &spacing, &spacing_ticks, &size_decay,
            &shaping, &max_inventory, &centre_mid, &rolling, &rolling_horizon_s, &session_ns,
            &origin_ns))
        return NULL;
    if (!PyType_Check(state_cls) || check_plain_class(quote_cls) < 0
            || check_plain_class(quoteset_cls) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "state_cls must be a class");
        return NULL;
    }
    if (levels < 1 || levels > MAX_LEVELS || session_ns < 1) {
        PyErr_SetString(PyExc_ValueError, "levels must be in [1, 64] and session_ns >= 1");
        return NULL;
    }
    ASQuote *self = (ASQuote *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(state_cls);
    self->state_cls = (PyTypeObject *)state_cls;
    Py_INCREF(quote_cls);
    self->quote_cls = (PyTypeObject *)quote_cls;
    Py_INCREF(quoteset_cls);
    self->quoteset_cls = (PyTypeObject *)quoteset_cls;
    Py_INCREF(buy);
    self->buy = buy;
    Py_INCREF(sell);
    self->sell = sell;
    self->gamma = gamma;
    self->order_qty = order_qty;
    self->levels = levels;
    self->spacing = spacing;
    self->use_spacing_ticks = spacing_ticks != Py_None;
    self->spacing_ticks = self->use_spacing_ticks ? PyFloat_AsDouble(spacing_ticks) : 0.0;
    self->size_decay = size_decay;
    self->shaping = shaping;
    self->max_inventory = max_inventory;
    self->centre_mid = centre_mid;
    self->rolling = rolling;
    self->rolling_horizon_s = rolling_horizon_s;
    self->session_ns = session_ns;
    self->origin_ns = origin_ns;
    self->vectorcall = ASQuote_vectorcall;
    if (PyErr_Occurred()
            || offsets_of(self->state_cls, STATE_FIELDS, S_N, self->state_off) < 0
            || offsets_of(self->quote_cls, QUOTE_FIELDS, Q_N, self->quote_off) < 0
            || offsets_of(self->quoteset_cls, QUOTESET_FIELDS, QS_N, self->quoteset_off) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
ASQuote_dealloc(ASQuote *self)
{
    Py_XDECREF(self->state_cls);
    Py_XDECREF(self->quote_cls);
    Py_XDECREF(self->quoteset_cls);
    Py_XDECREF(self->buy);
    Py_XDECREF(self->sell);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A tuple of Quotes at ``price[i]``, ``qty[i]``, level ``level[i]``. */
static PyObject *
quote_tuple(ASQuote *self, PyObject *side, Py_ssize_t n, const double *price, const double *qty,
            const int *level)
{
    PyObject *quotes = PyTuple_New(n);
    if (quotes == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyFloat_FromDouble(price[i]), *q = PyFloat_FromDouble(qty[i]);
        PyObject *l = PyLong_FromLong(level[i]), *quote = NULL;
        if (p != NULL && q != NULL && l != NULL) {
            PyObject *values[Q_N];
            values[Q_SIDE] = side;
            values[Q_PRICE] = p;
            values[Q_QTY] = q;
            values[Q_LEVEL] = l;
            quote = build(self->quote_cls, self->quote_off, Q_N, values);
        }
        Py_XDECREF(p);
        Py_XDECREF(q);
        Py_XDECREF(l);
        if (quote == NULL) {
            Py_DECREF(quotes);
            return NULL;
        }
        PyTuple_SET_ITEM(quotes, i, quote);
    }
    return quotes;
}

static PyObject *as_quote(ASQuote *, PyObject *, double, double, double, double, double);

static PyObject *
ASQuote_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ASQuote *self = (ASQuote *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "quote takes one positional argument");
        return NULL;
    }
    PyObject *state = args[0];
    if (Py_TYPE(state) != self->state_cls)
        Py_RETURN_NONE;
    const Py_ssize_t *off = self->state_off;
    double mid, tick, inventory, sigma, k;
    PyObject *ts = SLOT(state, off[S_TS]);
    if (ts == NULL || !PyLong_CheckExact(ts) || !float_slot(state, off[S_MID], &mid)
            || !float_slot(state, off[S_TICK], &tick) || !float_slot(state, off[S_INV], &inventory)
            || !float_slot(state, off[S_SIGMA], &sigma) || !float_slot(state, off[S_K], &k))
        Py_RETURN_NONE;
    return as_quote(self, ts, mid, tick, inventory, sigma, k);
}

/*
 * The quote for the state's values (ts: an exact int): a new QuoteSet, a new reference to None
 * for the Python method, or NULL with an error set.
 */
static PyObject *
as_quote(ASQuote *self, PyObject *ts, double mid, double tick, double inventory, double sigma,
         double k)
{
    /* strategies.base.can_quote (A is not used) */
    if (!(0.0 < mid && mid < INFINITY && 0.0 <= sigma && sigma < INFINITY && 0.0 < k
          && k < INFINITY && isfinite(inventory)))
        Py_RETURN_NONE;
    /* strategies.base.time_to_horizon_s */
    double tau;
    if (self->rolling) {
        tau = self->rolling_horizon_s;
    }
    else {
        int overflow = 0;
        long long now = PyLong_AsLongLongAndOverflow(ts, &overflow), since;
        if (overflow || __builtin_sub_overflow(now, self->origin_ns, &since))
            Py_RETURN_NONE;
        long long elapsed = since % self->session_ns;
        if (elapsed < 0)
            elapsed += self->session_ns;  /* Python's modulo takes the divisor's sign */
        long long left = self->session_ns - elapsed;
        if (left > (1LL << 53))
            Py_RETURN_NONE;  /* int / int is exact in doubles only below 2**53 */
        tau = (double)left / 1e9;
    }
    double gamma = self->gamma * self->order_qty;
    double depth = gamma <= 1e-12 ? 1.0 / k : log1p(gamma / k) / gamma;
    double half_spread = 0.5 * (gamma * sigma * sigma * tau + 2.0 * depth);
    double centre = self->centre_mid
        ? mid : mid - inventory / self->order_qty * gamma * sigma * sigma * tau;
    /* strategies.ladder.build_ladder */
    double spacing = self->spacing;
    if (self->use_spacing_ticks) {
        if (!(0.0 < tick && tick < INFINITY))
            Py_RETURN_NONE;  /* the reference raises */
        spacing = self->spacing_ticks * tick;
    }
    double bid_scale = 1.0, ask_scale = 1.0;
    if (self->shaping) {
        double increasing = 1.0 - fabs(inventory) / self->max_inventory;
        increasing = increasing > 0.0 ? increasing : 0.0;  /* max(0.0, increasing) */
        if (inventory > 0)
            bid_scale = increasing;
        else if (inventory < 0)
            ask_scale = increasing;
    }
    double bid_price = centre - half_spread, ask_price = centre + half_spread;
    double bp[MAX_LEVELS], bq[MAX_LEVELS], ap[MAX_LEVELS], aq[MAX_LEVELS];
    int bl[MAX_LEVELS], al[MAX_LEVELS];
    Py_ssize_t nb = 0, na = 0;
    for (int level = 0; level < self->levels; level++) {
        double qty = self->order_qty * pow(self->size_decay, (double)level);
        if (!isfinite(qty))
            Py_RETURN_NONE;  /* the reference's float ** int raises on overflow */
        double price = bid_price - level * spacing, side_qty = qty * bid_scale;
        if (side_qty > 0 && 0 < price && price < INFINITY) {
            bp[nb] = price;
            bq[nb] = side_qty;
            bl[nb++] = level;
        }
        price = ask_price + level * spacing;
        side_qty = qty * ask_scale;
        if (side_qty > 0 && 0 < price && price < INFINITY) {
            ap[na] = price;
            aq[na] = side_qty;
            al[na++] = level;
        }
    }
    PyObject *values[QS_N];
    values[0] = quote_tuple(self, self->buy, nb, bp, bq, bl);
    values[1] = values[0] == NULL ? NULL : quote_tuple(self, self->sell, na, ap, aq, al);
    values[2] = values[1] == NULL ? NULL : PyFloat_FromDouble(centre);
    values[3] = values[2] == NULL ? NULL : PyFloat_FromDouble(half_spread);
    PyObject *result = NULL;
    if (values[3] != NULL)
        result = build(self->quoteset_cls, self->quoteset_off, QS_N, values);
    for (int i = 0; i < QS_N; i++)
        Py_XDECREF(values[i]);
    return result;
}

static PyTypeObject ASQuoteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.ASQuote",
    .tp_basicsize = sizeof(ASQuote),
    .tp_dealloc = (destructor)ASQuote_dealloc,
    .tp_vectorcall_offset = offsetof(ASQuote, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ASQuote(**params)(state): AvellanedaStoikov.quote in C, or None for the "
              "Python method.",
    .tp_new = ASQuote_new,
};

/* ------------------------------------------------------------------ Decide */

/*
 * The engine's requote in one call, for the Avellaneda-Stoikov strategy: ASQuote, then
 * GateCheck's check, OrderManager.live_qtys and OrderDiff's diff on the manager's orders, then
 * GateCheck's admits. Each is the plain case of its Python step, so the whole answers only
 * when every step would: otherwise None, with nothing changed, and the engine runs the steps
 * one by one (bot.engine.Engine._requote; tests/test_decide_kernel.py).
 *
 * It reads the gate's state and the manager's orders and counters from their slots, and on an
 * answer does what OrderManager.diff does: adds the new orders to the dict, marks the
 * cancelled ones, and advances _next_id, placed and cancels_sent.
 */

static const char *const MANAGER_FIELDS[] = {"_orders", "_next_id", "placed", "cancels_sent"};
enum { M_ORDERS, M_NEXT_ID, M_PLACED, M_CANCELS, M_N };

typedef struct {
    PyObject_HEAD
    ASQuote *quote;
    GateCheck *check;
    OrderDiff *diff;
    PyObject *gate, *manager, *active, *reducing;
    Py_ssize_t state_off, manager_off[M_N];
    int admit_plain;
    vectorcallfunc vectorcall;
} Decide;

static PyObject *Decide_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
Decide_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"quote", "check", "diff", "gate", "state_slot", "active",
                             "reducing", "admit_plain", "manager", NULL};
    PyObject *quote, *check, *diff, *gate, *active, *reducing, *manager;
    const char *state_slot;
    int admit_plain;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!OsOOpO", kwlist, &ASQuoteType, &quote,
                                     &GateCheckType, &check, &OrderDiffType, &diff, &gate,
                                     &state_slot, &active, &reducing, &admit_plain, &manager))
        return NULL;
    ASQuote *q = (ASQuote *)quote;
    if (q->quote_cls != ((GateCheck *)check)->quote_cls
            || q->quote_cls != ((OrderDiff *)diff)->quote_cls) {
        PyErr_SetString(PyExc_TypeError, "the kernels must share one Quote class");
        return NULL;
    }
    Decide *self = (Decide *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
#define KEEP(field, value) (Py_INCREF(value), self->field = (void *)(value))
    KEEP(quote, quote);
    KEEP(check, check);
    KEEP(diff, diff);
    KEEP(gate, gate);
    KEEP(manager, manager);
    KEEP(active, active);
    KEEP(reducing, reducing);
#undef KEEP
    self->admit_plain = admit_plain;
    self->vectorcall = Decide_vectorcall;
    if ((self->state_off = slot_offset(Py_TYPE(gate), state_slot)) < 0
            || offsets_of(Py_TYPE(manager), MANAGER_FIELDS, M_N, self->manager_off) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
Decide_dealloc(Decide *self)
{
    Py_XDECREF(self->quote);
    Py_XDECREF(self->check);
    Py_XDECREF(self->diff);
    Py_XDECREF(self->gate);
    Py_XDECREF(self->manager);
    Py_XDECREF(self->active);
    Py_XDECREF(self->reducing);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An exact int slot's value in [0, 2**60]: 1, or 0 when it is anything else. */
static int
count_slot(PyObject *obj, Py_ssize_t offset, long long *out)
{
    PyObject *value = SLOT(obj, offset);
    if (value == NULL || !PyLong_CheckExact(value))
        return 0;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    return !overflow && 0 <= *out && *out <= (1LL << 60);
}

/* Store a count in an int slot: 0, or -1 with an error set. */
static int
set_count(PyObject *obj, Py_ssize_t offset, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL)
        return -1;
    set_slot(obj, offset, number);
    Py_DECREF(number);
    return 0;
}

/*
 * decide(ts_ns, best_bid, best_ask, last_book_ts_ns, position, sigma, intensity_k, tick_size)
 * -> (approved, commands, live_buy_qty, live_sell_qty, all_admitted) | None, for a valid book.
 */
static PyObject *
Decide_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Decide *self = (Decide *)callable;
    if (PyVectorcall_NARGS(nargsf) != 8 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "decide takes 8 positional arguments");
        return NULL;
    }
    PyObject *ts = args[0], *last = args[3];
    for (int i = 1; i < 8; i++) {
        if (i != 3 && !PyFloat_CheckExact(args[i]))
            Py_RETURN_NONE;
    }
    if (!PyLong_CheckExact(ts) || !PyLong_CheckExact(last))
        Py_RETURN_NONE;
    double bid = PyFloat_AS_DOUBLE(args[1]), ask = PyFloat_AS_DOUBLE(args[2]);
    double position = PyFloat_AS_DOUBLE(args[4]), sigma = PyFloat_AS_DOUBLE(args[5]);
    double k = PyFloat_AS_DOUBLE(args[6]), tick = PyFloat_AS_DOUBLE(args[7]);
    /* RiskGate.check: HALTED approves nothing (the Python steps cancel everything) */
    PyObject *state = SLOT(self->gate, self->state_off);
    int reducing;
    if (state == self->active)
        reducing = 0;
    else if (state == self->reducing)
        reducing = 1;
    else
        Py_RETURN_NONE;
    int overflow = 0;
    long long ts_ns = PyLong_AsLongLongAndOverflow(ts, &overflow);
    const Py_ssize_t *moff = self->manager_off;
    PyObject *orders = SLOT(self->manager, moff[M_ORDERS]);
    long long next_id, placed_before, cancels_before;
    if (overflow || orders == NULL || !PyDict_CheckExact(orders)
            || !count_slot(self->manager, moff[M_NEXT_ID], &next_id)
            || !count_slot(self->manager, moff[M_PLACED], &placed_before)
            || !count_slot(self->manager, moff[M_CANCELS], &cancels_before))
        Py_RETURN_NONE;
    /* the engine's requote: the live quantities are those before the diff */
    double live_buy, live_sell;
    if (!live_qtys_core(self->diff, orders, &live_buy, &live_sell))
        Py_RETURN_NONE;
    double mid = (bid + ask) * 0.5;
    PyObject *approved = as_quote(self->quote, ts, mid, tick, position, sigma, k);
    if (approved == NULL || approved == Py_None)
        return approved;
    PyObject *bids = SLOT(approved, self->quote->quoteset_off[0]);
    PyObject *asks = SLOT(approved, self->quote->quoteset_off[1]);
    GateInputs in = {mid, bid, ask, tick, position, 0.0};
    PyObject *commands;
    Py_ssize_t placed;
    int done = 0;
    if (gate_passes(self->check, bids, asks, ts, last, &in, reducing))
        done = diff_core(self->diff, orders, bids, asks, bid, ask, ts, ts_ns, next_id, &commands,
                         &placed);
    if (done <= 0) {
        Py_DECREF(approved);
        if (done < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    Py_ssize_t cancels = PyList_GET_SIZE(commands) - placed;
    if (set_count(self->manager, moff[M_NEXT_ID], next_id + placed) < 0
            || set_count(self->manager, moff[M_PLACED], placed_before + placed) < 0
            || set_count(self->manager, moff[M_CANCELS], cancels_before + cancels) < 0) {
        Py_DECREF(approved);
        Py_DECREF(commands);
        return NULL;
    }
    int all_admitted = self->admit_plain
                       && admits_core(self->check, commands, position, live_buy, live_sell, 0);
    /* Filled directly: Py_BuildValue would parse its format on every quoting frame. */
    PyObject *out = PyTuple_New(5);
    PyObject *buy_qty = PyFloat_FromDouble(live_buy), *sell_qty = PyFloat_FromDouble(live_sell);
    if (out == NULL || buy_qty == NULL || sell_qty == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(buy_qty);
        Py_XDECREF(sell_qty);
        Py_DECREF(approved);
        Py_DECREF(commands);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, approved);
    PyTuple_SET_ITEM(out, 1, commands);
    PyTuple_SET_ITEM(out, 2, buy_qty);
    PyTuple_SET_ITEM(out, 3, sell_qty);
    PyTuple_SET_ITEM(out, 4, PyBool_FromLong(all_admitted));
    return out;
}

static PyTypeObject DecideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.Decide",
    .tp_basicsize = sizeof(Decide),
    .tp_dealloc = (destructor)Decide_dealloc,
    .tp_vectorcall_offset = offsetof(Decide, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Decide(quote, check, diff, gate, state_slot, active, reducing, admit_plain, "
              "manager)(ts_ns, best_bid, best_ask, last_book_ts_ns, position, sigma, "
              "intensity_k, tick_size): the engine's requote in C, or None for its steps.",
    .tp_new = Decide_new,
};

/* ------------------------------------------------------------------ module */

/* ------------------------------------------------------------------ AfterBook
 *
 * The plain case of bot.engine.Engine._after_book's last steps for a new mid: the volatility
 * estimator's update (strategies.volatility.VolatilityEstimator.update) when no sampling
 * boundary has passed, the portfolio's mark (bot.portfolio.Portfolio.mark) and the
 * kill-switch's PnL check (risk.gate.RiskGate.on_pnl) when it trips nothing. Call
 * (ts_ns, mid) -> True when it did all three, None (not mine, nothing changed) when any is
 * not its plain case: the first mid, a boundary passed (the estimator records a change), a
 * value of an unexpected type, the loss or drawdown limit reached (the gate trips), the
 * gate's limits replaced. tests/test_after_book_kernel.py holds it to the Python.
 */

static const char *const AB_EST_FIELDS[] = {"_last_mid", "_next_boundary_ns"};
enum { AE_LAST_MID, AE_BOUNDARY, AE_N };
static const char *const AB_PF_FIELDS[] = {"mark_price", "position", "cash"};
enum { AP_MARK, AP_POSITION, AP_CASH, AP_N };
static const char *const AB_GATE_FIELDS[] = {"_peak_pnl", "_state", "_limits"};
enum { AG_PEAK, AG_STATE, AG_LIMITS, AG_N };

typedef struct {
    PyObject_HEAD
    PyObject *estimator; /* or NULL: no estimator */
    PyObject *portfolio;
    PyObject *gate;
    PyObject *halted;
    PyObject *limits; /* the gate's limits when built: max_loss and max_drawdown are theirs */
    double max_loss;
    double max_drawdown;
    Py_ssize_t est_off[AE_N];
    Py_ssize_t pf_off[AP_N];
    Py_ssize_t gate_off[AG_N];
    vectorcallfunc vectorcall;
} AfterBook;

static PyObject *AfterBook_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *
AfterBook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"estimator", "portfolio", "gate", "halted", "max_loss",
                             "max_drawdown", NULL};
    PyObject *estimator, *portfolio, *gate, *halted;
    double max_loss, max_drawdown;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOdd", kwlist, &estimator, &portfolio,
                                     &gate, &halted, &max_loss, &max_drawdown))
        return NULL;
    AfterBook *self = (AfterBook *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = AfterBook_vectorcall;
    self->max_loss = max_loss;
    self->max_drawdown = max_drawdown;
    if (estimator != Py_None) {
        Py_INCREF(estimator);
        self->estimator = estimator;
        if (offsets_of(Py_TYPE(estimator), AB_EST_FIELDS, AE_N, self->est_off) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    Py_INCREF(portfolio);
    self->portfolio = portfolio;
    Py_INCREF(gate);
    self->gate = gate;
    Py_INCREF(halted);
    self->halted = halted;
    if (offsets_of(Py_TYPE(portfolio), AB_PF_FIELDS, AP_N, self->pf_off) < 0
            || offsets_of(Py_TYPE(gate), AB_GATE_FIELDS, AG_N, self->gate_off) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->limits = SLOT(gate, self->gate_off[AG_LIMITS]);
    if (self->limits == NULL) {
        PyErr_SetString(PyExc_ValueError, "AfterBook: the gate has no limits");
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(self->limits);
    return (PyObject *)self;
}

/* The engine holds the kernel and the kernel the engine's parts: no cycle through it, but
 * it takes part in the cyclic GC like the other kernels. */
static int
AfterBook_traverse(AfterBook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->estimator);
    Py_VISIT(self->portfolio);
    Py_VISIT(self->gate);
    Py_VISIT(self->halted);
    Py_VISIT(self->limits);
    return 0;
}

static int
AfterBook_clear(AfterBook *self)
{
    Py_CLEAR(self->estimator);
    Py_CLEAR(self->portfolio);
    Py_CLEAR(self->gate);
    Py_CLEAR(self->halted);
    Py_CLEAR(self->limits);
    return 0;
}

static void
AfterBook_dealloc(AfterBook *self)
{
    PyObject_GC_UnTrack(self);
    AfterBook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
AfterBook_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    AfterBook *self = (AfterBook *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "AfterBook takes (ts_ns, mid)");
        return NULL;
    }
    PyObject *ts_obj = args[0], *mid_obj = args[1];
    if (!PyFloat_CheckExact(mid_obj) || !PyLong_CheckExact(ts_obj))
        Py_RETURN_NONE;
    double mid = PyFloat_AS_DOUBLE(mid_obj);
    /* Both the estimator and the mark take only a finite, positive mid. */
    int usable = 0.0 < mid && mid < Py_HUGE_VAL;
    /* VolatilityEstimator.update: only the mid is kept while no boundary has passed. */
    if (self->estimator != NULL && usable) {
        double last;
        if (!float_slot(self->estimator, self->est_off[AE_LAST_MID], &last) || last != last)
            Py_RETURN_NONE; /* the first mid sets the sampling clock */
        PyObject *boundary = SLOT(self->estimator, self->est_off[AE_BOUNDARY]);
        if (boundary == NULL || !PyLong_CheckExact(boundary))
            Py_RETURN_NONE;
        int overflow_ts, overflow_b;
        long long ts = PyLong_AsLongLongAndOverflow(ts_obj, &overflow_ts);
        long long next = PyLong_AsLongLongAndOverflow(boundary, &overflow_b);
        if (overflow_ts || overflow_b || PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (ts > next)
            Py_RETURN_NONE; /* a sample to record */
    }
    /* Portfolio.mark */
    PyObject *portfolio = self->portfolio;
    double position, cash, mark;
    if (!float_slot(portfolio, self->pf_off[AP_POSITION], &position)
            || !float_slot(portfolio, self->pf_off[AP_CASH], &cash))
        Py_RETURN_NONE;
    if (usable)
        mark = mid;
    else if (!float_slot(portfolio, self->pf_off[AP_MARK], &mark))
        Py_RETURN_NONE;
    double pnl = position == 0.0 ? cash : cash + position * mark;
    /* RiskGate.on_pnl: the peak, and no limit reached */
    PyObject *gate = self->gate;
    if (SLOT(gate, self->gate_off[AG_LIMITS]) != self->limits)
        Py_RETURN_NONE;
    PyObject *before = SLOT(gate, self->gate_off[AG_PEAK]);
    int finite = -Py_HUGE_VAL < pnl && pnl < Py_HUGE_VAL; /* on_pnl ignores anything else */
    int new_peak = 0;
    if (finite) {
        double peak;
        if (before == Py_None) {
            new_peak = 1;
            peak = pnl;
        }
        else if (before != NULL && PyFloat_CheckExact(before)) {
            double old = PyFloat_AS_DOUBLE(before);
            new_peak = pnl > old;
            peak = new_peak ? pnl : old;
        }
        else {
            Py_RETURN_NONE;
        }
        if (SLOT(gate, self->gate_off[AG_STATE]) != self->halted
                && (pnl <= -self->max_loss || peak - pnl >= self->max_drawdown))
            Py_RETURN_NONE; /* the gate trips */
    }
    /* Every step is its plain case: do them. */
    if (usable) {
        if (self->estimator != NULL)
            set_slot(self->estimator, self->est_off[AE_LAST_MID], mid_obj);
        set_slot(portfolio, self->pf_off[AP_MARK], mid_obj);
    }
    if (new_peak) {
        /* Portfolio.mark returns the cash itself when flat, else a new float. */
        PyObject *value = position == 0.0 ? Py_NewRef(SLOT(portfolio, self->pf_off[AP_CASH]))
                                          : PyFloat_FromDouble(pnl);
        if (value == NULL)
            return NULL;
        set_slot(gate, self->gate_off[AG_PEAK], value);
        Py_DECREF(value);
    }
    Py_RETURN_TRUE;
}

static PyTypeObject AfterBookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot._cbook.AfterBook",
    .tp_basicsize = sizeof(AfterBook),
    .tp_dealloc = (destructor)AfterBook_dealloc,
    .tp_vectorcall_offset = offsetof(AfterBook, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)AfterBook_traverse,
    .tp_clear = (inquiry)AfterBook_clear,
    .tp_doc = "AfterBook(estimator, portfolio, gate, halted, max_loss, max_drawdown): the "
              "volatility update, mark and PnL check of a new mid; call (ts_ns, mid) -> True, "
              "or None (not mine).",
    .tp_new = AfterBook_new,
};

int
decide_init(PyObject *module)
{
    /* PyModule_AddType readies each type and adds it under the last part of its tp_name. */
    PyTypeObject *types[] = {&MakerType, &OrderDiffType, &GateCheckType, &ASQuoteType,
                             &DecideType, &AfterBookType};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (PyModule_AddType(module, types[i]) < 0)
            return -1;
    }
    return 0;
}
