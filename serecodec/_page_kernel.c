/* The compiled kernel of the context-mixing page model (serecodec.page_model describes the model;
 * this file only runs it). One loop both encodes and decodes, so the two cannot drift apart.
 *
 * Why C and not numba like the other kernels: a page is coded once per process, and numba's
 * import and cache load cost a fresh process about 1.2 s, more than coding the page itself. A
 * plain extension module (no numpy headers: arrays come in through the buffer protocol) loads in
 * a millisecond. It codes exactly as the numba kernel it replaced (tests/data/legacy pins that):
 * integer arithmetic only, with Python's rounding (floor division, arithmetic shifts of negative
 * numbers), so archives are identical on every machine.
 *
 * Safety: every array's length is checked against what the parameters make the loop touch before
 * the loop starts; templates must be causal and inside the padding; the images live in a
 * zero-padded buffer, so every template read is inside it whatever the image size; a corrupted
 * payload stops the decoder within one row of running past its end.
 *
 * A Pipe lets the encoder's check run beside it: the encoder appends its bytes to the pipe (in
 * blocks that never move) and publishes how many after each row; a decoder reading from the
 * same pipe in another thread waits for bytes it needs, so encode and verifying decode take the
 * time of one of them on two cores. The encoder never waits for the decoder.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define PAD 34                 /* template reach: rows above and columns each side */
#define STATE_BITS 10          /* a slot: probability << STATE_BITS | count */
#define APM_STEP 192           /* stretch units between APM knots */
#define NEAR_SETS 44           /* the layered state's ink-count weight sets (11 x 4) */
#define LAYERED_SETS (NEAR_SETS + 48)
#define STRETCH_LIMIT 3071     /* logits in 1/256 units, within +-12 */
#define MIXER_SETS 16
#define FINAL_INPUTS 3
#define APM2_CONTEXTS (1 << 16)
#define MATCH_STATES 3         /* the match model's states that pick the final mixer's weights: none, short, long */
#define MATCH_LONG 16          /* a match this many pixels long is a long one */
#define MATCH_CONTEXTS 33      /* the match context model: no match, or (predicted bit, length 0..15) */
#define MAX_MODELS 16
#define MAX_TEMPLATE 64
#define TOP (1u << 24)
#define SLACK 16               /* bytes after the image buffer: an 8-byte template read may pass its end */

typedef struct {               /* a run of up to 8 template pixels side by side in one row, in template order */
    int64_t delta;             /* the run's first pixel, from the coded pixel */
    int lo, shift;             /* its bits in the gathered byte start at bit lo; in the context, at bit shift */
    uint64_t mask;             /* (1 << run length) - 1 */
} Chunk;

#define PIPE_BLOCK_BITS 16

typedef struct {
    PyObject_HEAD
    uint8_t **blocks;          /* blocks of 2^PIPE_BLOCK_BITS bytes, allocated by the writer as it goes */
    size_t capacity, n_blocks; /* bytes it may hold; its block table's length */
    _Atomic size_t written;    /* bytes the writer has published (its blocks are in place before) */
    _Atomic int done;          /* the writer has finished, or will never write (close) */
    int taken;                 /* a writer has had it */
} Pipe;

typedef struct {
    uint8_t *out;
    size_t size, n;
    uint64_t low, range, cache;
    int64_t cache_size;
    int failed;
    Pipe *pipe;                /* when set, the bytes go there instead of out */
} Encoder;

static inline __attribute__((always_inline)) int64_t floor_div(int64_t a, int64_t b) {   /* Python's // (b > 0) */
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline int64_t clamp_logit(int64_t d) {
    return d > STRETCH_LIMIT ? STRETCH_LIMIT : (d < -STRETCH_LIMIT ? -STRETCH_LIMIT : d);
}

static void put_byte(Encoder *e, uint8_t byte) {
    if (e->pipe) {
        Pipe *pipe = e->pipe;
        size_t block = e->n >> PIPE_BLOCK_BITS;
        if (e->n >= pipe->capacity || block >= pipe->n_blocks) {
            e->failed = 1;
            return;
        }
        if (!pipe->blocks[block] && !(pipe->blocks[block] = malloc((size_t)1 << PIPE_BLOCK_BITS))) {
            e->failed = 1;
            return;
        }
        pipe->blocks[block][e->n & (((size_t)1 << PIPE_BLOCK_BITS) - 1)] = byte;
        e->n++;
        return;
    }
    if (e->n == e->size) {
        size_t size = e->size * 2;
        uint8_t *grown = realloc(e->out, size);
        if (!grown) {
            e->failed = 1;
            return;
        }
        e->out = grown;
        e->size = size;
    }
    e->out[e->n++] = byte;
}

static void shift_low(Encoder *e) {              /* LZMA's: emit the cached byte once its carry is settled */
    if (e->low < 0xFF000000u || e->low > 0xFFFFFFFFu) {
        uint64_t carry = e->low >> 32, temp = e->cache;
        do {
            put_byte(e, (uint8_t)((temp + carry) & 0xFF));
            temp = 0xFF;
        } while (--e->cache_size != 0);
        e->cache = (e->low >> 24) & 0xFF;
    }
    e->cache_size++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void encode_bit(Encoder *e, int bit, int64_t p1) {   /* P(1) = p1 / 2^16 */
    uint64_t bound = (e->range >> 16) * (uint64_t)p1;
    if (bit) {
        e->range = bound;
    } else {
        e->low += bound;
        e->range -= bound;
    }
    while (e->range < TOP) {
        e->range = (e->range << 8) & 0xFFFFFFFFu;
        shift_low(e);
    }
}

typedef struct {
    const uint8_t *data;
    Py_ssize_t size, pos;
    uint64_t code, range;
    Pipe *pipe;                /* when set, the bytes come from there (size: what is known so far) */
    uint8_t *const *pipe_blocks;
} Decoder;

static void pipe_wait(Decoder *d) {     /* until byte pos is published or the writer is done */
    Pipe *pipe = d->pipe;
    for (int spins = 0;; spins++) {
        size_t written = atomic_load_explicit(&pipe->written, memory_order_acquire);
        if ((size_t)d->pos < written) {
            d->size = (Py_ssize_t)written;
            return;
        }
        if (atomic_load_explicit(&pipe->done, memory_order_acquire)) {
            d->size = (Py_ssize_t)atomic_load_explicit(&pipe->written, memory_order_acquire);
            d->pipe = NULL;             /* finished: read what it holds, then zeros */
            return;
        }
        if (spins < 64) {
            sched_yield();
        } else {
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
    }
}

static inline uint64_t next_byte(Decoder *d) {                  /* bytes past the end read 0 */
    if (d->pipe && d->pos >= d->size)
        pipe_wait(d);
    uint64_t byte = 0;
    if (d->pos < d->size)
        byte = d->data ? d->data[d->pos] : d->pipe_blocks[d->pos >> PIPE_BLOCK_BITS][d->pos & ((1 << PIPE_BLOCK_BITS) - 1)];
    d->pos++;
    return byte;
}

static inline int decode_bit(Decoder *d, int64_t p1) {
    uint64_t bound = (d->range >> 16) * (uint64_t)p1;
    int bit;
    if (d->code < bound) {
        d->range = bound;
        bit = 1;
    } else {
        d->code -= bound;
        d->range -= bound;
        bit = 0;
    }
    while (d->range < TOP) {
        d->range = (d->range << 8) & 0xFFFFFFFFu;
        d->code = ((d->code << 8) | next_byte(d)) & 0xFFFFFFFFu;
    }
    return bit;
}

static inline void learn(uint32_t *tables, int64_t slot, int bit, int64_t limit, const int64_t *reciprocal) {
    int64_t state = tables[slot];
    int64_t p = state >> STATE_BITS, n = state & ((1 << STATE_BITS) - 1);
    p += ((((int64_t)bit << 22) - p) * reciprocal[n]) >> 16;
    if (p < 0)
        p = 0;
    else if (p > (1 << 22) - 1)
        p = (1 << 22) - 1;
    if (n < limit)
        n++;
    tables[slot] = (uint32_t)((p << STATE_BITS) | n);
}

static inline int64_t dot(const int64_t *inputs, const int64_t *weights, int64_t n) {
    int64_t sum = 0;
    for (int64_t m = 0; m < n; m++)
        sum += inputs[m] * weights[m];
    return clamp_logit(sum >> 16);
}

static inline void train(const int64_t *inputs, int64_t *weights, int64_t n, int bit, int64_t p, int64_t rate) {
    int64_t err = (((int64_t)bit << 16) - p) * rate;
    for (int64_t m = 0; m < n; m++)
        weights[m] += (inputs[m] * err) >> 18;
}

static inline __attribute__((always_inline)) void apm_step(int64_t *apm, int64_t slot, int64_t frac, int bit,
                                                           int64_t scale) {
    int64_t target = (int64_t)bit << 16;
    apm[slot] += floor_div((target - apm[slot]) * (APM_STEP - frac), scale);
    apm[slot + 1] += floor_div((target - apm[slot + 1]) * frac, scale);
}

static inline void apm_update(int64_t *apm, int64_t slot, int64_t frac, int bit, int64_t rate) {
    if (rate == 6)              /* the shipped rate: a constant divisor compiles to a multiply, not a division */
        apm_step(apm, slot, frac, bit, (int64_t)APM_STEP << 6);
    else
        apm_step(apm, slot, frac, bit, (int64_t)APM_STEP << rate);
}

static inline uint64_t gather8(const uint8_t *at) {   /* 8 pixel bytes (0/1) -> 8 bits, column j -> bit 7 - j */
    uint64_t v;
    memcpy(&v, at, 8);
    return (v * 0x8040201008040201ull) >> 56;
}

static inline uint64_t raw_context(const uint8_t *at, const Chunk *chunks, int64_t from, int64_t to) {
    uint64_t ctx = 0;                       /* the template's pixels as a number, pixel 0 the highest bit */
    for (int64_t c = from; c < to; c++)
        ctx |= ((gather8(at + chunks[c].delta) >> chunks[c].lo) & chunks[c].mask) << chunks[c].shift;
    return ctx;
}

static inline int64_t context_index(uint64_t raw, int64_t length, int64_t bits) {   /* direct, or hashed */
    return (int64_t)(length > bits ? (raw * 0x9E3779B97F4A7C15ull) >> (64 - bits) : raw);
}

/* Each template as runs of pixels that sit side by side in a row and follow each other in the
 * template (pixel k of a template of length L is bit L-1-k of its context, as the model defines
 * it): a run is one 8-byte read, one multiply and a shift, where reading pixel by pixel took a
 * load and a shift each. */
static void plan_chunks(const int64_t *offsets, int64_t kmax, const int64_t *lengths, int64_t models, int64_t stride,
                        Chunk *chunks, int64_t *first) {
    int64_t count = 0;
    for (int64_t m = 0; m < models; m++) {
        first[m] = count;
        const int64_t *t = offsets + m * kmax * 2;
        for (int64_t k = 0; k < lengths[m];) {
            int64_t n = 1;
            while (k + n < lengths[m] && n < 8 && t[(k + n) * 2] == t[k * 2] && t[(k + n) * 2 + 1] == t[k * 2 + 1] + n)
                n++;
            chunks[count].delta = t[k * 2] * stride + t[k * 2 + 1];
            chunks[count].lo = (int)(8 - n);
            chunks[count].mask = (1ull << n) - 1;
            chunks[count].shift = (int)(lengths[m] - k - n);
            count++;
            k += n;
        }
    }
    first[models] = count;
}

typedef struct {
    Py_buffer pixels, heights, widths, payload, offsets, lengths, bases, bits, limits, tables, weights, apm,
        squash, stretch, reciprocal, runs, run_model, run_bases, weights2, final, apm2;
} Buffers;

/* The match model's hash of the pixel's three largest contexts (the 16-pixel template with its
 * adaptive pixel, the 38-pixel and the 25-pixel wide ones) into a table of 2^bits positions. */
static inline int64_t match_index(uint64_t t16, uint64_t large, uint64_t wide, int bits) {
    uint64_t h = large * 0x9E3779B97F4A7C15ull;
    h = (h ^ wide) * 0xC2B2AE3D27D4EB4Full;
    h = (h ^ t16) * 0x9E3779B97F4A7C15ull;
    return (int64_t)(h >> (64 - bits));
}

/* Table bits for an image of this many pixels: no larger than the image needs (a run of small
 * images must not clear a big table each), at most max_bits. */
static inline int match_table_bits(int64_t pixels, int64_t max_bits) {
    int bits = 10;
    while (bits < max_bits && (1ll << bits) < pixels)
        bits++;
    return bits;
}

#define ARRAY(name, type) ((type *)b.name.buf)
#define COUNT(name, type) ((int64_t)(b.name.len / (Py_ssize_t)sizeof(type)))

static int fail(const char *message) {
    PyErr_SetString(PyExc_ValueError, message);
    return -1;
}

/* Everything the loop will touch, checked against the arrays' lengths (-1 and an exception if
 * anything is off: the loop below then never reads or writes outside an array). */
static int check(const Buffers *bp, int64_t models, int64_t kmax, int64_t apm_model, int64_t tp_slot,
                       int64_t runmap_slot, int64_t n_mix, int layered, int64_t mixer_rate, int64_t apm_rate,
                       int64_t match_bits, int64_t linear) {
    Buffers b = *bp;
    int64_t n_images = COUNT(heights, int64_t), total = 0;
    if (COUNT(widths, int64_t) != n_images)
        return fail("heights and widths differ in length");
    for (int64_t i = 0; i < n_images; i++) {
        int64_t h = ARRAY(heights, int64_t)[i], w = ARRAY(widths, int64_t)[i];
        if (h < 0 || w < 0 || h > (1 << 20) || w > (1 << 20))
            return fail("image size out of range");
        total += h * w;
    }
    if (b.pixels.len != total)
        return fail("pixels do not match the image sizes");
    if (models < 1 || models > MAX_MODELS || kmax < 1 || kmax > MAX_TEMPLATE || COUNT(bases, int64_t) != models ||
        COUNT(bits, int64_t) != models || COUNT(limits, int64_t) != models + 1 ||
        COUNT(offsets, int64_t) != models * kmax * 2)
        return fail("model layout arrays disagree");
    int64_t n_tables = COUNT(tables, uint32_t);
    if (COUNT(reciprocal, int64_t) != (1 << STATE_BITS) || COUNT(squash, int64_t) != 2 * STRETCH_LIMIT + 1 ||
        COUNT(stretch, int64_t) != 4096)
        return fail("lookup tables of the wrong size");
    for (int64_t i = 0; i < 4096; i++)
        if (ARRAY(stretch, int64_t)[i] < -STRETCH_LIMIT || ARRAY(stretch, int64_t)[i] > STRETCH_LIMIT)
            return fail("stretch table out of range");
    for (int64_t m = 0; m <= models; m++)
        if (ARRAY(limits, int64_t)[m] < 0 || ARRAY(limits, int64_t)[m] >= (1 << STATE_BITS))
            return fail("count limit out of range");
    for (int64_t m = 0; m < models; m++) {
        int64_t length = ARRAY(lengths, int64_t)[m], bits = ARRAY(bits, int64_t)[m], base = ARRAY(bases, int64_t)[m];
        if (length < 1 || length > kmax || bits < 1 || bits > 40)
            return fail("template length or table bits out of range");
        int64_t span = length <= bits ? (1ll << length) : (1ll << bits);
        if (base < 0 || base + span > n_tables)
            return fail("context table past the state's end");
        for (int64_t k = 0; k < length; k++) {
            int64_t dy = ARRAY(offsets, int64_t)[(m * kmax + k) * 2], dx = ARRAY(offsets, int64_t)[(m * kmax + k) * 2 + 1];
            if (dy < -PAD || dy > 0 || dx < -PAD || dx > PAD || (dy == 0 && dx >= 0))
                return fail("template pixel not causal or past the padding");
        }
    }
    if (tp_slot < 0 || tp_slot >= n_tables)
        return fail("row-repeat slot out of range");
    if (apm_model < 0 || apm_model >= models || COUNT(apm, int64_t) < (33ll << ARRAY(bits, int64_t)[apm_model]) ||
        ARRAY(lengths, int64_t)[apm_model] > ARRAY(bits, int64_t)[apm_model])
        return fail("APM table too small for its model");
    int64_t run_models = COUNT(run_model, int64_t);
    if (run_models > MAX_MODELS || COUNT(run_bases, int64_t) != run_models || runmap_slot < 0 ||
        runmap_slot + 64 * run_models > n_tables)
        return fail("run maps out of range");
    for (int64_t r = 0; r < run_models; r++) {
        int64_t m = ARRAY(run_model, int64_t)[r];
        if (m < 0 || m >= models || ARRAY(run_bases, int64_t)[r] < 0 ||
            ARRAY(run_bases, int64_t)[r] + (1ll << ARRAY(bits, int64_t)[m]) > (int64_t)b.runs.len)
            return fail("run map past its table");
    }
    if (COUNT(weights, int64_t) != MIXER_SETS * n_mix)
        return fail("mixer weights of the wrong shape");
    int64_t final_sets = match_bits ? MATCH_STATES * MIXER_SETS : MIXER_SETS;
    if (layered) {
        if (models < 3 || run_models < 2 || ARRAY(lengths, int64_t)[0] < 16 || ARRAY(lengths, int64_t)[1] > 10 ||
            COUNT(weights2, int64_t) != LAYERED_SETS * n_mix || COUNT(final, int64_t) != final_sets * FINAL_INPUTS ||
            COUNT(apm2, int64_t) != 33ll * APM2_CONTEXTS)
            return fail("layered state of the wrong shape");
    }
    if (match_bits && (!layered || models < 4 || match_bits < 10 || match_bits > 24 ||
                       runmap_slot + 64 * run_models + 64 + MATCH_CONTEXTS * 1024 > n_tables))
        return fail("match model of the wrong shape");       /* (a negative match_bits included) */
    if (mixer_rate < 0 || mixer_rate > 16 || apm_rate < 0 || apm_rate > 16)
        return fail("rates out of range");
    if (linear != 0 && linear != 1)
        return fail("linear inputs flag not 0 or 1");
    return 0;
}

static void release(Buffers *b) {
    Py_buffer *all[] = {&b->pixels, &b->heights, &b->widths, &b->payload, &b->offsets, &b->lengths, &b->bases,
                        &b->bits, &b->limits, &b->tables, &b->weights, &b->apm, &b->squash, &b->stretch,
                        &b->reciprocal, &b->runs, &b->run_model, &b->run_bases, &b->weights2, &b->final, &b->apm2};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i]->obj)
            PyBuffer_Release(all[i]);
}

static PyObject *pipe_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Py_ssize_t capacity;
    static char *keywords[] = {"capacity", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:Pipe", keywords, &capacity))
        return NULL;
    if (capacity < 0 || capacity > ((Py_ssize_t)1 << 46)) {
        PyErr_SetString(PyExc_ValueError, "pipe capacity out of range");
        return NULL;
    }
    Pipe *pipe = (Pipe *)type->tp_alloc(type, 0);
    if (!pipe)
        return NULL;
    pipe->capacity = (size_t)capacity;
    pipe->n_blocks = ((size_t)capacity >> PIPE_BLOCK_BITS) + 1;
    pipe->blocks = calloc(pipe->n_blocks, sizeof(uint8_t *));
    atomic_init(&pipe->written, 0);
    atomic_init(&pipe->done, 0);
    pipe->taken = 0;
    if (!pipe->blocks) {
        Py_DECREF(pipe);
        return PyErr_NoMemory();
    }
    return (PyObject *)pipe;
}

static void pipe_dealloc(Pipe *pipe) {
    if (pipe->blocks) {
        for (size_t i = 0; i < pipe->n_blocks; i++)
            free(pipe->blocks[i]);
        free(pipe->blocks);
    }
    Py_TYPE(pipe)->tp_free((PyObject *)pipe);
}

static PyObject *pipe_close(Pipe *pipe, PyObject *unused) {
    (void)unused;
    atomic_store_explicit(&pipe->done, 1, memory_order_release);
    Py_RETURN_NONE;
}

static PyMethodDef pipe_methods[] = {
    {"close", (PyCFunction)pipe_close, METH_NOARGS,
     "No more bytes will come: a decoder reading it finishes on what it holds (call it however the writer ended)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject PipeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "serecodec._page_kernel.Pipe",
    .tp_basicsize = sizeof(Pipe),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pipe(capacity): the encoder's bytes for a decoder in another thread (see the module source).",
    .tp_new = pipe_new,
    .tp_dealloc = (destructor)pipe_dealloc,
    .tp_methods = pipe_methods,
};

static PyObject *code_images(PyObject *self, PyObject *args) {
    (void)self;
    int decoding;
    Py_ssize_t kmax, apm_model, mixer_rate, apm_rate, tp_slot, runmap_slot, match_bits, linear;
    PyObject *pixels_object, *pipe_object = Py_None;
    Buffers b;
    memset(&b, 0, sizeof(b));
    if (!PyArg_ParseTuple(args, "pOy*y*y*y*ny*y*y*y*w*w*w*nnnny*y*y*w*y*y*nw*w*w*nn|O:code_images", &decoding,
                          &pixels_object, &b.heights, &b.widths, &b.payload, &b.offsets, &kmax, &b.lengths, &b.bases,
                          &b.bits, &b.limits, &b.tables, &b.weights, &b.apm, &apm_model, &mixer_rate, &apm_rate,
                          &tp_slot, &b.squash, &b.stretch, &b.reciprocal, &b.runs, &b.run_model, &b.run_bases,
                          &runmap_slot, &b.weights2, &b.final, &b.apm2, &match_bits, &linear, &pipe_object) ||
        PyObject_GetBuffer(pixels_object, &b.pixels, decoding ? PyBUF_WRITABLE : PyBUF_SIMPLE)) {
        release(&b);
        return NULL;
    }
    int64_t models = COUNT(lengths, int64_t), run_models = COUNT(run_model, int64_t);
    int64_t n_mix = models + run_models + (match_bits ? 2 : 0) + (linear ? models : 0) + 1;   /* inputs, then the bias */
    int layered = b.final.len > 0;
    if (check(&b, models, kmax, apm_model, tp_slot, runmap_slot, n_mix, layered, mixer_rate, apm_rate, match_bits,
              linear)) {
        release(&b);
        return NULL;
    }
    Pipe *pipe = NULL;
    if (pipe_object != Py_None) {
        if (!PyObject_TypeCheck(pipe_object, &PipeType)) {
            release(&b);
            PyErr_SetString(PyExc_TypeError, "pipe must be a Pipe or None");
            return NULL;
        }
        pipe = (Pipe *)pipe_object;
        if (!decoding) {              /* one writer, with room for the most it could write */
            int64_t bound = 64;
            for (int64_t i = 0; i < COUNT(heights, int64_t); i++)
                bound += 2 * (ARRAY(heights, int64_t)[i] * ARRAY(widths, int64_t)[i] + ARRAY(heights, int64_t)[i]);
            if (pipe->taken || (size_t)bound > pipe->capacity) {
                release(&b);
                PyErr_SetString(PyExc_ValueError, pipe->taken ? "pipe already written" : "pipe too small");
                return NULL;
            }
            pipe->taken = 1;
        }
    }
    const int64_t *heights = ARRAY(heights, int64_t), *widths = ARRAY(widths, int64_t);
    const int64_t *lengths = ARRAY(lengths, int64_t), *bases = ARRAY(bases, int64_t), *bits = ARRAY(bits, int64_t);
    const int64_t *limits = ARRAY(limits, int64_t), *squash = ARRAY(squash, int64_t);
    const int64_t *stretch = ARRAY(stretch, int64_t), *reciprocal = ARRAY(reciprocal, int64_t);
    const int64_t *run_model = ARRAY(run_model, int64_t), *run_bases = ARRAY(run_bases, int64_t);
    uint8_t *pixels = ARRAY(pixels, uint8_t), *runs = ARRAY(runs, uint8_t);
    uint32_t *tables = ARRAY(tables, uint32_t);
    int64_t *weights = ARRAY(weights, int64_t), *apm = ARRAY(apm, int64_t), *weights2 = ARRAY(weights2, int64_t);
    int64_t *final = ARRAY(final, int64_t), *apm2 = ARRAY(apm2, int64_t);
    int64_t n_images = COUNT(heights, int64_t);

    Encoder e = {NULL, 0, 0, 0, 0xFFFFFFFFu, 0, 1, 0, decoding ? NULL : pipe};
    Decoder d = {ARRAY(payload, uint8_t), b.payload.len, 0, 0, 0xFFFFFFFFu, NULL, NULL};
    if (decoding && pipe) {
        d.data = NULL;
        d.size = 0;
        d.pipe = pipe;
        d.pipe_blocks = pipe->blocks;
    }
    if (!decoding) {
        e.size = 1024 + (size_t)b.pixels.len / 16;
        e.out = pipe ? NULL : malloc(e.size);
    }
    int64_t n_chunks_max = 0;
    for (int64_t m = 0; m < models; m++)
        n_chunks_max += lengths[m];
    Chunk *chunks = malloc(sizeof(Chunk) * (size_t)n_chunks_max);
    if ((!decoding && !pipe && !e.out) || !chunks) {
        free(e.out);
        free(chunks);
        release(&b);
        if (e.pipe)
            atomic_store_explicit(&pipe->done, 1, memory_order_release);
        return PyErr_NoMemory();
    }
    int64_t first[MAX_MODELS + 1];
    uint64_t raws[MAX_MODELS] = {0}, ahead[MAX_MODELS] = {0}, left[MAX_MODELS] = {0};
    int64_t inputs[MAX_MODELS * 3 + 2], slots[MAX_MODELS], p12[MAX_MODELS], run_at[MAX_MODELS], run_slot[MAX_MODELS];
    int64_t logits[FINAL_INPUTS] = {0};
    int64_t p_1 = 0, p_2 = 0, p_3 = 0, set2 = 0, set3 = 0, fset = 0, a2 = 0, frac = 0, a_slot = 0;
    int64_t offset = 0, match_slot = runmap_slot + 64 * run_models, m_at = 0, m_len = 0, m_slot = -1, m_key = 0;
    int64_t m_context_slot = 0;
    int m_expected = 0, m_bits = 0, m_blank = 1;
    int64_t *match_table = NULL;
    int truncated = 0, nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    if (decoding) {                       /* (without the GIL: from a pipe, it may wait for the writer) */
        for (int i = 0; i < 5; i++)
            d.code = (d.code << 8) | next_byte(&d);
        d.code &= 0xFFFFFFFFu;
    }
    for (int64_t image = 0; image < n_images && !truncated && !nomem; image++) {
        int64_t height = heights[image], width = widths[image], stride = width + 2 * PAD;
        uint8_t *buffer = calloc((size_t)((height + PAD) * stride + SLACK), 1);
        if (!buffer) {
            nomem = 1;
            break;
        }
        if (match_bits) {                 /* positions by context, this image's own: reset per image */
            m_bits = match_table_bits(height * width, match_bits);
            match_table = calloc((size_t)1 << m_bits, sizeof(int64_t));
            if (!match_table) {
                free(buffer);
                nomem = 1;
                break;
            }
        }
        plan_chunks(ARRAY(offsets, int64_t), kmax, lengths, models, stride, chunks, first);
        for (int64_t m = 0; m < models; m++) {   /* each template's bit for the pixel to the left */
            const int64_t *t = ARRAY(offsets, int64_t) + m * kmax * 2;
            left[m] = 0;
            for (int64_t k = 0; k < lengths[m]; k++)
                if (t[k * 2] == 0 && t[k * 2 + 1] == -1)
                    left[m] |= 1ull << (lengths[m] - 1 - k);
        }
        for (int64_t y = 0; y < height; y++) {
            if (decoding && d.pos > d.size + 8) {
                truncated = 1;
                break;
            }
            int64_t row = (y + PAD) * stride + PAD;
            m_len = 0;                    /* a match never runs on from the row above */
            for (int64_t x = -1; x < width; x++) {
                int64_t at = row + x, p1, wset = 0, dotted = 0, p_mix = 0;
                if (x < 0) {                                        /* the row-repeat flag */
                    p1 = (int64_t)tables[tp_slot] >> (STATE_BITS + 6);
                    p1 = p1 < 1 ? 1 : (p1 > 65535 ? 65535 : p1);
                } else {
                    if (x == 0)               /* later pixels had theirs worked out one pixel ahead */
                        for (int64_t m = 0; m < models; m++)
                            raws[m] = raw_context(buffer + at, chunks, first[m], first[m + 1]);
                    for (int64_t m = 0; m < models; m++)
                        slots[m] = bases[m] + context_index(raws[m], lengths[m], bits[m]);
                    /* The next pixel's contexts are known but for this pixel's bit: fetch the table
                     * slots and run maps of both outcomes now, so the random reads into the large
                     * hashed tables overlap this pixel's mixing (~15% faster here, the same bytes). */
                    if (x + 1 < width) {
                        int64_t if0[MAX_MODELS], if1[MAX_MODELS];
                        for (int64_t m = 0; m < models; m++) {
                            ahead[m] = raw_context(buffer + at + 1, chunks, first[m], first[m + 1]);
                            if0[m] = context_index(ahead[m], lengths[m], bits[m]);
                            if1[m] = context_index(ahead[m] | left[m], lengths[m], bits[m]);
                            __builtin_prefetch(tables + bases[m] + if0[m]);
                            __builtin_prefetch(tables + bases[m] + if1[m]);
                        }
                        for (int64_t r = 0; r < run_models; r++) {
                            __builtin_prefetch(runs + run_bases[r] + if0[run_model[r]]);
                            __builtin_prefetch(runs + run_bases[r] + if1[run_model[r]]);
                        }
                    }
                    for (int64_t m = 0; m < models; m++) {
                        p12[m] = (int64_t)tables[slots[m]] >> (STATE_BITS + 10);     /* the 12-bit probability */
                        inputs[m] = stretch[p12[m]];
                    }
                    for (int64_t r = 0; r < run_models; r++) {      /* the run maps of the first hashed models */
                        int64_t m = run_model[r];
                        run_at[r] = run_bases[r] + slots[m] - bases[m];
                        int64_t state = runs[run_at[r]];
                        if (state == 0) {
                            run_slot[r] = -1;
                            inputs[models + r] = 0;
                        } else {
                            int64_t length = state >> 1;
                            run_slot[r] = runmap_slot + r * 64 + (length < 31 ? length : 31) * 2 + (state & 1);
                            int64_t st = stretch[(int64_t)tables[run_slot[r]] >> (STATE_BITS + 10)];
                            inputs[models + r] = (state & 1) ? st : -st;
                        }
                    }
                    int64_t bias = models + run_models, m_state = 0;
                    if (match_bits) {   /* where this context last occurred: predict what followed it */
                        m_blank = (raws[0] | raws[2] | raws[3]) == 0;
                        if (!m_blank)
                            m_key = match_index(raws[0], raws[2], raws[3], m_bits);
                        if (m_len == 0)
                            m_at = m_blank ? 0 : match_table[m_key];
                        if (m_at) {
                            m_expected = buffer[m_at];
                            m_slot = match_slot + (m_len < 31 ? m_len : 31) * 2 + m_expected;
                            int64_t st = stretch[(int64_t)tables[m_slot] >> (STATE_BITS + 10)];
                            inputs[bias] = m_expected ? st : -st;
                            m_state = m_len < MATCH_LONG ? 1 : 2;
                        } else {
                            m_slot = -1;
                            inputs[bias] = 0;
                        }
                        bias++;         /* the match state beside the 10-pixel context, as a context model */
                        int64_t m_context = m_at ? 1 + m_expected * 16 + (m_len < 15 ? m_len : 15) : 0;
                        m_context_slot = match_slot + 64 + m_context * 1024 + (int64_t)(raws[1] & 1023);
                        inputs[bias] = stretch[(int64_t)tables[m_context_slot] >> (STATE_BITS + 10)];
                        bias++;
                    }
                    if (linear)         /* each context's probability itself too, not only its stretch */
                        for (int64_t m = 0; m < models; m++)
                            inputs[bias++] = (p12[m] - 2048) >> 1;
                    inputs[bias] = 256;
                    wset = ((int64_t)buffer[at - 1] << 3) | ((int64_t)buffer[at - stride - 1] << 2) |
                           ((int64_t)buffer[at - stride] << 1) | (int64_t)buffer[at - stride + 1];
                    dotted = dot(inputs, weights + wset * n_mix, n_mix);
                    p_mix = squash[dotted + STRETCH_LIMIT];
                    if (layered) {
                        int64_t near = __builtin_popcountll(raws[1]);     /* ink in the 10-pixel template */
                        int64_t count = (int64_t)tables[slots[2]] & ((1 << STATE_BITS) - 1);
                        set2 = near * 4 + (count == 0 ? 0 : (count < 3 ? 1 : (count < 16 ? 2 : 3)));
                        int64_t run0 = runs[run_at[0]], run1 = runs[run_at[1]];
                        set3 = NEAR_SETS + ((run0 >> 1) < 7 ? (run0 >> 1) : 7) * 2 + (run0 & 1) +
                               16 * ((run1 & 1) + (run1 > 0 ? 1 : 0));
                        logits[0] = dotted;
                        p_1 = p_mix;
                        logits[1] = dot(inputs, weights2 + set2 * n_mix, n_mix);
                        logits[2] = dot(inputs, weights2 + set3 * n_mix, n_mix);
                        p_2 = squash[logits[1] + STRETCH_LIMIT];
                        p_3 = squash[logits[2] + STRETCH_LIMIT];
                        fset = m_state * MIXER_SETS + wset;
                        dotted = dot(logits, final + fset * FINAL_INPUTS, FINAL_INPUTS);
                        p_mix = squash[dotted + STRETCH_LIMIT];
                    }
                    int64_t knot = (dotted + 3072) / APM_STEP;
                    frac = (dotted + 3072) - knot * APM_STEP;
                    a_slot = (slots[apm_model] - bases[apm_model]) * 33 + knot;
                    int64_t p_apm = floor_div(apm[a_slot] * (APM_STEP - frac) + apm[a_slot + 1] * frac, APM_STEP);
                    if (layered) {
                        a2 = (int64_t)(raws[0] >> (lengths[0] - 16)) * 33 + knot;   /* the 16-pixel template */
                        int64_t p_apm2 = floor_div(apm2[a2] * (APM_STEP - frac) + apm2[a2 + 1] * frac, APM_STEP);
                        p1 = (2 * p_mix + 3 * p_apm + 3 * p_apm2) >> 3;
                    } else {
                        p1 = (p_mix + 3 * p_apm) >> 2;
                    }
                    p1 = p1 < 1 ? 1 : (p1 > 65535 ? 65535 : p1);
                }
                int bit;
                if (decoding) {
                    bit = decode_bit(&d, p1);
                } else {
                    if (x < 0) {
                        bit = 1;
                        for (int64_t i = 0; i < width; i++)
                            if ((pixels[offset + y * width + i] != 0) != buffer[row - stride + i]) {
                                bit = 0;
                                break;
                            }
                    } else {
                        bit = pixels[offset + y * width + x] != 0;
                    }
                    encode_bit(&e, bit, p1);
                    if (e.failed) {
                        nomem = 1;
                        break;
                    }
                }
                if (x < 0) {
                    learn(tables, tp_slot, bit, limits[models], reciprocal);
                    if (bit) {                                      /* the row repeats the one above */
                        memcpy(buffer + row, buffer + row - stride, (size_t)width);
                        break;
                    }
                    continue;
                }
                buffer[at] = (uint8_t)bit;
                for (int64_t m = 0; m < models; m++)
                    raws[m] = ahead[m] | (bit ? left[m] : 0);
                for (int64_t m = 0; m < models; m++)
                    learn(tables, slots[m], bit, limits[m], reciprocal);
                for (int64_t r = 0; r < run_models; r++) {
                    int64_t state = runs[run_at[r]], length;
                    if (run_slot[r] >= 0)
                        learn(tables, run_slot[r], bit == (state & 1), 1023, reciprocal);
                    if (state != 0 && bit == (state & 1))
                        length = (state >> 1) + 1 < 127 ? (state >> 1) + 1 : 127;
                    else
                        length = 1;
                    runs[run_at[r]] = (uint8_t)((length << 1) | bit);
                }
                if (match_bits) {
                    learn(tables, m_context_slot, bit, 1023, reciprocal);
                    if (m_slot >= 0) {
                        learn(tables, m_slot, bit == m_expected, 1023, reciprocal);
                        if (bit == m_expected) {      /* m_at < at: it stays on pixels already coded */
                            m_at++;
                            m_len = m_len < 65535 ? m_len + 1 : m_len;
                        } else {
                            m_len = 0;
                        }
                    }
                    if (!m_blank)
                        match_table[m_key] = at;
                }
                if (layered) {
                    train(logits, final + fset * FINAL_INPUTS, FINAL_INPUTS, bit, p_mix, mixer_rate);
                    train(inputs, weights + wset * n_mix, n_mix, bit, p_1, mixer_rate);
                    train(inputs, weights2 + set2 * n_mix, n_mix, bit, p_2, mixer_rate);
                    train(inputs, weights2 + set3 * n_mix, n_mix, bit, p_3, mixer_rate);
                    apm_update(apm2, a2, frac, bit, apm_rate);
                } else {
                    train(inputs, weights + wset * n_mix, n_mix, bit, p_mix, mixer_rate);
                }
                apm_update(apm, a_slot, frac, bit, apm_rate);
            }
            if (nomem)
                break;
            if (e.pipe)                   /* this row's bytes, for a decoder reading beside */
                atomic_store_explicit(&pipe->written, e.n, memory_order_release);
        }
        if (decoding && !truncated)
            for (int64_t y = 0; y < height; y++)
                memcpy(pixels + offset + y * width, buffer + (y + PAD) * stride + PAD, (size_t)width);
        free(buffer);
        free(match_table);
        match_table = NULL;
        offset += height * width;
    }
    if (!decoding && !nomem) {
        for (int i = 0; i < 5; i++)
            shift_low(&e);
        nomem = e.failed;
    }
    if (e.pipe) {
        atomic_store_explicit(&pipe->written, nomem ? 0 : e.n, memory_order_release);
        atomic_store_explicit(&pipe->done, 1, memory_order_release);
    }
    Py_END_ALLOW_THREADS
    free(chunks);
    release(&b);
    if (nomem) {
        free(e.out);
        return PyErr_NoMemory();
    }
    PyObject *payload;
    if (e.pipe) {                         /* the pipe's blocks, as one bytes object */
        payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)e.n);
        if (payload) {
            char *to = PyBytes_AS_STRING(payload);
            size_t block = (size_t)1 << PIPE_BLOCK_BITS;
            for (size_t at = 0; at < e.n; at += block)
                memcpy(to + at, pipe->blocks[at >> PIPE_BLOCK_BITS], e.n - at < block ? e.n - at : block);
        }
    } else {
        payload = PyBytes_FromStringAndSize(decoding ? "" : (const char *)e.out, decoding ? 0 : (Py_ssize_t)e.n);
    }
    free(e.out);
    if (!payload)
        return NULL;
    return Py_BuildValue("(Nn)", payload, decoding ? d.pos : (Py_ssize_t)0);
}

static PyMethodDef methods[] = {
    {"code_images", code_images, METH_VARARGS,
     "code_images(decoding, pixels, heights, widths, payload, offsets, kmax, lengths, bases, bits, limits, tables, "
     "weights, apm, apm_model, mixer_rate, apm_rate, tp_slot, squash, stretch, reciprocal, runs, run_model, "
     "run_bases, runmap_slot, weights2, final, apm2, match_bits[, pipe]) -> (payload bytes, bytes read)\n\n"
     "Encode pixels (decoding false) or decode the payload into pixels (decoding true), updating the state "
     "arrays in place. Arrays: C-contiguous; int64 unless named otherwise (pixels, payload, runs: uint8; "
     "tables: uint32). With a Pipe, the encoder also writes its bytes there as it goes and a decoder reads "
     "them from there (payload ignored), so the two can run at once in two threads."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_page_kernel",
                                    "The page model's compiled kernel (see page_model).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__page_kernel(void) {
    if (PyType_Ready(&PipeType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&PipeType);
    if (PyModule_AddObject(m, "Pipe", (PyObject *)&PipeType) < 0) {
        Py_DECREF(&PipeType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "PAD", PAD) || PyModule_AddIntConstant(m, "STATE_BITS", STATE_BITS) ||
        PyModule_AddIntConstant(m, "APM_STEP", APM_STEP) || PyModule_AddIntConstant(m, "NEAR_SETS", NEAR_SETS) ||
        PyModule_AddIntConstant(m, "LAYERED_SETS", LAYERED_SETS) ||
        PyModule_AddIntConstant(m, "STRETCH_LIMIT", STRETCH_LIMIT) ||
        PyModule_AddIntConstant(m, "MIXER_SETS", MIXER_SETS) ||
        PyModule_AddIntConstant(m, "FINAL_INPUTS", FINAL_INPUTS) ||
        PyModule_AddIntConstant(m, "APM2_CONTEXTS", APM2_CONTEXTS) ||
        PyModule_AddIntConstant(m, "MATCH_STATES", MATCH_STATES) ||
        PyModule_AddIntConstant(m, "MATCH_CONTEXTS", MATCH_CONTEXTS)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
