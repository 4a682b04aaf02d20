/* A decoding step at batch 1 in C: the products stream the weights at the speed memory allows, and a whole
   pre-LayerNorm Transformer block runs in one call, where torch would run some twenty small operations.

   gemv(y, x, w, b, n, k, threads): y (n) = x (k) · w (k, n) + b, float32, every array contiguous; the arguments are
   addresses (Tensor.data_ptr()), b may be 0. The weight is the transposed layout of nn/packed.py, (in, out)
   row-major, so the kernel reads it as one forward stream: four input rows at a time, each scaled by its input and
   added into the output, which stays in the L1 cache. With threads > 1 the input rows are split into that many
   parts, each a contiguous slice of the weight; the calling thread does the first and persistent worker threads the
   others (they spin for a millisecond after a product, so the next one starts at once, then sleep); the caller
   waits for them and adds their partial sums before it returns.

   attention(...): one-token attention steps of several rows over their caches, the new keys and values written.

   layer(...): one block of nn/transformer.py's LayerPlan for one row, x += attention(LN(x)); x += FF(LN(x)), its
   key and value written into the cache at position `used` (see `layer` below for the arguments).

   The GIL stays held: calls never overlap. AVX2 + FMA only; `fast` says whether this CPU has them, and
   nn/packed.py uses the module only then. Measurements: docs/compute.md. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 63
#define SPIN_NS 1000000L

/* y (n) = x (k) · w (k, n) + b (b may be NULL): four input rows at a time, each added, scaled, into y. */
__attribute__((target("avx2,fma"))) static void
gemv_rows(float *y, const float *x, const float *w, const float *b, long n, long k)
{
    for (long j = 0; j < n; j++)
        y[j] = b ? b[j] : 0.0f;
    long vector_end = n / 8 * 8;
    long i = 0;
    for (; i + 4 <= k; i += 4) {
        const float *w0 = w + i * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        __m256 x0 = _mm256_set1_ps(x[i]), x1 = _mm256_set1_ps(x[i + 1]);
        __m256 x2 = _mm256_set1_ps(x[i + 2]), x3 = _mm256_set1_ps(x[i + 3]);
        for (long j = 0; j < vector_end; j += 8) {
            __m256 acc = _mm256_loadu_ps(y + j);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j), x0, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j), x1, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j), x2, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j), x3, acc);
            _mm256_storeu_ps(y + j, acc);
        }
        for (long j = vector_end; j < n; j++)
            y[j] += w0[j] * x[i] + w1[j] * x[i + 1] + w2[j] * x[i + 2] + w3[j] * x[i + 3];
    }
    for (; i < k; i++) {
        const float *row = w + i * n;
        for (long j = 0; j < n; j++)
            y[j] += row[j] * x[i];
    }
}

/* The product in hand, and the pool that shares it: worker p does part p when its slot's task changes, and
   acknowledges it; workers a product does not need are left alone (they sleep after a millisecond). */
static struct {
    float *y;
    const float *x, *w, *b;
    long n, k, chunk;  /* chunk: the input rows of a part */
} job;
static struct {
    atomic_long task, done;
    float *partial;  /* this part's sum over its input rows, (n) */
    long size;
    char pad[64 - 2 * sizeof(atomic_long) - sizeof(float *) - sizeof(long)];  /* a cache line per worker */
} slots[MAX_WORKERS + 1];
static long generation;  /* the caller's count of products; touched with the GIL held only */
static atomic_int sleeping;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int workers;

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Part p multiplies input rows [p·chunk, (p+1)·chunk): each thread streams one contiguous slice of the weight (a
   third faster on two threads than splitting the output columns, whose rows each thread reads in pieces). Part 0
   writes y, with the bias; the others their partial sums, which the caller adds. */
static void run_part(long part)
{
    long begin = part * job.chunk, end = begin + job.chunk < job.k ? begin + job.chunk : job.k;
    float *out = part == 0 ? job.y : slots[part].partial;
    long rows = end > begin ? end - begin : 0;  /* 0: a zero partial sum */
    gemv_rows(out, job.x + begin, job.w + begin * job.n, part == 0 ? job.b : NULL, job.n, rows);
}

static void *worker(void *arg)
{
    long part = (long)arg, seen = atomic_load(&slots[part].done);  /* idle: done == task */
    for (;;) {
        long started = now_ns(), spins = 0, task;
        while ((task = atomic_load_explicit(&slots[part].task, memory_order_acquire)) == seen) {
            _mm_pause();
            if (++spins % 256 == 0 && now_ns() - started > SPIN_NS) {
                pthread_mutex_lock(&lock);
                atomic_fetch_add(&sleeping, 1);  /* seen by the caller after it sets a task, or we see the task */
                while ((task = atomic_load(&slots[part].task)) == seen)
                    pthread_cond_wait(&wake, &lock);
                atomic_fetch_sub(&sleeping, 1);
                pthread_mutex_unlock(&lock);
                break;
            }
        }
        seen = task;
        run_part(part);
        atomic_store_explicit(&slots[part].done, task, memory_order_release);
    }
    return NULL;
}

static void forget_workers(void)  /* in a forked child: the threads were not copied */
{
    workers = 0;
    atomic_store(&sleeping, 0);
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
}

static int ensure_workers(long count)
{
    while (workers < count) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker, (void *)(long)(workers + 1)) != 0)
            return -1;
        pthread_detach(thread);
        workers++;
    }
    return 0;
}

/* y (n) = x (k) · w (k, n) + b, shared among `threads` threads. */
static void product(float *y, const float *x, const float *w, const float *b, long n, long k, long threads)
{
    long parts = threads < 1 ? 1 : threads > MAX_WORKERS + 1 ? MAX_WORKERS + 1 : threads;
    if (parts > k / 64)
        parts = k / 64 > 1 ? k / 64 : 1;  /* at least 64 input rows a part */
    if (parts > 1 && ensure_workers(parts - 1) != 0)
        parts = 1 + workers;  /* could not start more threads: share among those there are */
    for (long part = 1; part < parts; part++)
        if (slots[part].size < n) {
            float *grown = realloc(slots[part].partial, n * sizeof(float));
            if (grown == NULL) {
                parts = part;  /* out of memory: fewer parts */
                break;
            }
            slots[part].partial = grown, slots[part].size = n;
        }
    job.y = y, job.x = x, job.w = w, job.b = b, job.n = n, job.k = k;
    job.chunk = (k / parts + 3) / 4 * 4;
    generation++;
    for (long part = 1; part < parts; part++)
        atomic_store(&slots[part].task, generation);
    if (parts > 1 && atomic_load(&sleeping)) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    run_part(0);
    for (long part = 1; part < parts; part++) {
        while (atomic_load_explicit(&slots[part].done, memory_order_acquire) != generation)
            _mm_pause();
        const float *partial = slots[part].partial;
        for (long j = 0; j < n; j++)
            y[j] += partial[j];
    }
}

static int parse(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const char *usage, long *out)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", usage, expected);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = PyFloat_Check(args[i]) ? 0 : PyLong_AsLong(args[i]);  /* addresses fit a long on x86-64 */
    if (PyErr_Occurred())
        return -1;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AVX2 and FMA, which genloom.nn._onerow needs");
        return -1;
    }
    return 0;
}

static PyObject *gemv(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    long a[7];
    if (parse(args, nargs, 7, "gemv(y, x, w, b, n, k, threads)", a) < 0)
        return NULL;
    product((float *)a[0], (const float *)a[1], (const float *)a[2], (const float *)a[3], a[4], a[5], a[6]);
    Py_RETURN_NONE;
}

/* The small operations of a block, on the calling thread. */

static void layer_norm(float *y, const float *x, const float *weight, const float *bias, long n, float eps)
{
    double mean = 0, variance = 0;  /* two passes, in double: as close to torch's Welford as float allows */
    for (long i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (long i = 0; i < n; i++)
        variance += (x[i] - mean) * (x[i] - mean);
    float scale = (float)(1.0 / sqrt(variance / n + eps));
    for (long i = 0; i < n; i++)
        y[i] = ((float)(x[i] - mean) * scale) * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
}

enum { RELU, GELU_TANH, GELU_ERF };

static void activate(float *x, long n, long kind)
{
    for (long i = 0; i < n; i++) {
        float v = x[i];
        if (kind == RELU)
            x[i] = v > 0 ? v : 0;
        else if (kind == GELU_TANH)
            x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else
            x[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
}

/* out (D) = softmax(q·Kᵀ / √D) V over one head's `length` cached keys and values (length, D). */
__attribute__((target("avx2,fma"))) static void
attend(float *out, const float *q, const float *keys, const float *values, long dim, long length, float *scores)
{
    float scale = 1.0f / sqrtf((float)dim), best = -INFINITY, total = 0;
    for (long s = 0; s < length; s++) {
        const float *key = keys + s * dim;
        float dot = 0;
        long d = 0;
        if (dim % 8 == 0) {
            __m256 acc = _mm256_setzero_ps();
            for (; d < dim; d += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(key + d), acc);
            __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            sum = _mm_hadd_ps(sum, sum);
            dot = _mm_cvtss_f32(_mm_hadd_ps(sum, sum));
        }
        for (; d < dim; d++)
            dot += q[d] * key[d];
        scores[s] = dot * scale;
        best = scores[s] > best ? scores[s] : best;
    }
    for (long s = 0; s < length; s++)
        total += (scores[s] = expf(scores[s] - best));
    for (long d = 0; d < dim; d++)
        out[d] = 0;
    for (long s = 0; s < length; s++) {
        const float *value = values + s * dim;
        float weight = scores[s] / total;
        for (long d = 0; d < dim; d++)
            out[d] += weight * value[d];
    }
}

/* One row's attention step: its key and value (in qkv, (3C): queries, keys, values, head after head) written at
   position `used` of its cache, keys and values (H, ·, D) with `stride` floats from head to head, then out (C) the
   attention of its query over the used + 1 positions. */
static void cache_and_attend(float *out, const float *qkv, float *keys, float *values, long heads, long dim,
                             long stride, long used, float *scores)
{
    long width = heads * dim;
    for (long head = 0; head < heads; head++) {
        float *k = keys + head * stride, *v = values + head * stride;
        memcpy(k + used * dim, qkv + width + head * dim, dim * sizeof(float));
        memcpy(v + used * dim, qkv + 2 * width + head * dim, dim * sizeof(float));
        attend(out + head * dim, qkv + head * dim, k, v, dim, used + 1, scores);
    }
}

/* attention(out, qkv, keys, values, batch, heads, head_dim, used, row_stride, head_stride, scratch): what
   `cache_and_attend` does for each of `batch` rows, qkv (B, 3C) and out (B, C) contiguous, the caches' rows
   `row_stride` floats apart; scratch ≥ used + 1 floats. On the calling thread: at several rows torch's own threads
   run the products around it. */
static PyObject *attention(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    long a[11];
    if (parse(args, nargs, 11, "attention(out, qkv, keys, values, batch, heads, head_dim, used, row_stride, "
                               "head_stride, scratch)", a) < 0)
        return NULL;
    long batch = a[4], heads = a[5], dim = a[6], used = a[7], row_stride = a[8], head_stride = a[9];
    for (long row = 0; row < batch; row++)
        cache_and_attend((float *)a[0] + row * heads * dim, (const float *)a[1] + row * 3 * heads * dim,
                         (float *)a[2] + row * row_stride, (float *)a[3] + row * row_stride, heads, dim, head_stride,
                         used, (float *)a[10]);
    Py_RETURN_NONE;
}

/* layer(x, scratch, keys, values, used, stride, heads, head_dim, hidden, activation, threads, eps1, eps2,
         norm1_weight, norm1_bias, qkv_weight, qkv_bias, out_weight, out_bias,
         norm2_weight, norm2_bias, up_weight, up_bias, down_weight, down_bias)

   x (C) in place, C = heads · head_dim; scratch ≥ 5C + hidden + used + 1 floats; keys and values one row's
   (H, ·, D) cache, `stride` positions from head to head, the new token's written at `used`, attention over used + 1
   positions; weights transposed,
   (in, out), as `gemv` takes them (the query, key and value matrix fused, (C, 3C): queries, keys, values, each head
   after head); activation 0 relu, 1 GELU (tanh), 2 GELU (erf); the epsilons are floats, everything else integers
   or addresses, and a bias or a norm's affine may be 0. */
static PyObject *layer(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    long a[25];
    if (parse(args, nargs, 25, "layer(x, scratch, keys, values, used, stride, heads, head_dim, hidden, activation, "
                               "threads, eps1, eps2, and 12 addresses of norms, weights and biases)", a) < 0)
        return NULL;
    float *x = (float *)a[0], *scratch = (float *)a[1], *keys = (float *)a[2], *values = (float *)a[3];
    long used = a[4], stride = a[5], heads = a[6], dim = a[7], hidden = a[8], activation = a[9], threads = a[10];
    const float *w[12];  /* norm1 weight, bias; qkv; out; norm2; up; down, each weight then bias */
    for (int i = 0; i < 12; i++)
        w[i] = (const float *)a[13 + i];
    float eps1 = (float)PyFloat_AsDouble(args[11]), eps2 = (float)PyFloat_AsDouble(args[12]);
    if (PyErr_Occurred())
        return NULL;
    long width = heads * dim;
    float *h = scratch, *qkv = h + width, *attention = qkv + 3 * width, *up = attention + width, *scores = up + hidden;

    layer_norm(h, x, w[0], w[1], width, eps1);
    product(qkv, h, w[2], w[3], 3 * width, width, threads);  /* (3C): queries, keys, values */
    cache_and_attend(attention, qkv, keys, values, heads, dim, stride * dim, used, scores);
    product(h, attention, w[4], w[5], width, width, threads);
    for (long i = 0; i < width; i++)
        x[i] += h[i];

    layer_norm(h, x, w[6], w[7], width, eps2);
    product(up, h, w[8], w[9], hidden, width, threads);
    activate(up, hidden, activation);
    product(h, up, w[10], w[11], width, hidden, threads);
    for (long i = 0; i < width; i++)
        x[i] += h[i];
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gemv", (PyCFunction)(void (*)(void))gemv, METH_FASTCALL,
     "gemv(y, x, w, b, n, k, threads): y (n) = x (k) · w (k, n) + b at the given addresses (b may be 0), float32."},
    {"layer", (PyCFunction)(void (*)(void))layer, METH_FASTCALL,
     "layer(x, scratch, keys, values, used, stride, heads, head_dim, hidden, activation, threads, eps1, eps2, "
     "12 addresses): one pre-LayerNorm block for one row, x in place (see onerow.c)."},
    {"attention", (PyCFunction)(void (*)(void))attention, METH_FASTCALL,
     "attention(out, qkv, keys, values, batch, heads, head_dim, used, row_stride, head_stride, scratch): each row's "
     "key and value cached at `used`, then its query's attention over used + 1 positions (see onerow.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_onerow", .m_doc = "A decoding step at batch 1: its products and its blocks.",
    .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__onerow(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    __builtin_cpu_init();
    int fast = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (PyModule_AddObject(m, "fast", PyBool_FromLong(fast)) < 0 || pthread_atfork(NULL, NULL, forget_workers) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
