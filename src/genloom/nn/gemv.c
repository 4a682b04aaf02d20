/* One row times a weight matrix, streamed at the speed memory allows: the product behind a decoding step at batch 1.

   gemv(y, x, w, b, n, k, threads): y (n) = x (k) · w (k, n) + b, float32, every array contiguous; the arguments are
   addresses (Tensor.data_ptr()), b may be 0. The weight is the transposed layout of nn/packed.py, (in, out)
   row-major, so the kernel reads it as one forward stream: four input rows at a time, each scaled by its input and
   added into the output, which stays in the L1 cache. With threads > 1 the output columns are split into that many
   parts; the calling thread does the first and persistent worker threads the others (they spin for a millisecond
   after a product, so the next one starts at once, then sleep); the caller waits for them before it returns. The
   GIL stays held: calls never overlap.

   AVX2 + FMA only; `fast` says whether this CPU has them, and nn/packed.py uses the kernel only then.
   Measurements: docs/compute.md. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define MAX_WORKERS 63
#define SPIN_NS 1000000L

__attribute__((target("avx2,fma"))) static void
gemv_columns(float *y, const float *x, const float *w, const float *b, long n, long k, long begin, long end)
{
    for (long j = begin; j < end; j++)
        y[j] = b ? b[j] : 0.0f;
    long vector_end = begin + (end - begin) / 8 * 8;
    long i = 0;
    for (; i + 4 <= k; i += 4) {
        const float *w0 = w + i * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        __m256 x0 = _mm256_set1_ps(x[i]), x1 = _mm256_set1_ps(x[i + 1]);
        __m256 x2 = _mm256_set1_ps(x[i + 2]), x3 = _mm256_set1_ps(x[i + 3]);
        for (long j = begin; j < vector_end; j += 8) {
            __m256 acc = _mm256_loadu_ps(y + j);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j), x0, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j), x1, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j), x2, acc);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j), x3, acc);
            _mm256_storeu_ps(y + j, acc);
        }
        for (long j = vector_end; j < end; j++)
            y[j] += w0[j] * x[i] + w1[j] * x[i + 1] + w2[j] * x[i + 2] + w3[j] * x[i + 3];
    }
    for (; i < k; i++) {
        const float *row = w + i * n;
        for (long j = begin; j < end; j++)
            y[j] += row[j] * x[i];
    }
}

/* The product in hand, and the pool that shares it: worker p does part p when its slot's task changes, and
   acknowledges it; workers a product does not need are left alone (they sleep after a millisecond). */
static struct {
    float *y;
    const float *x, *w, *b;
    long n, k, chunk;
} job;
static struct {
    atomic_long task, done;
    char pad[64 - 2 * sizeof(atomic_long)];  /* each worker spins on its own cache line */
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

static void run_part(long part)
{
    long begin = part * job.chunk, end = begin + job.chunk < job.n ? begin + job.chunk : job.n;
    if (begin < end)
        gemv_columns(job.y, job.x, job.w, job.b, job.n, job.k, begin, end);
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

static PyObject *gemv(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "gemv(y, x, w, b, n, k, threads) takes 7 arguments");
        return NULL;
    }
    float *y = PyLong_AsVoidPtr(args[0]);
    const float *x = PyLong_AsVoidPtr(args[1]), *w = PyLong_AsVoidPtr(args[2]), *b = PyLong_AsVoidPtr(args[3]);
    long n = PyLong_AsLong(args[4]), k = PyLong_AsLong(args[5]), threads = PyLong_AsLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AVX2 and FMA, which the one-row kernel needs");
        return NULL;
    }
    long parts = threads < 1 ? 1 : threads > MAX_WORKERS + 1 ? MAX_WORKERS + 1 : threads;
    if (parts > (n + 7) / 8)
        parts = (n + 7) / 8;  /* at least 8 columns a part */
    if (parts > 1 && ensure_workers(parts - 1) != 0)
        parts = 1 + workers;  /* could not start more threads: share among those there are */
    job.y = y, job.x = x, job.w = w, job.b = b, job.n = n, job.k = k;
    job.chunk = (n / parts + 7) / 8 * 8;
    generation++;
    for (long part = 1; part < parts; part++)
        atomic_store(&slots[part].task, generation);
    if (parts > 1 && atomic_load(&sleeping)) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    run_part(0);
    for (long part = 1; part < parts; part++)
        while (atomic_load_explicit(&slots[part].done, memory_order_acquire) != generation)
            _mm_pause();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gemv", (PyCFunction)(void (*)(void))gemv, METH_FASTCALL,
     "gemv(y, x, w, b, n, k, threads): y (n) = x (k) · w (k, n) + b at the given addresses (b may be 0), float32."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_gemv", .m_doc = "The one-row product of a decoding step.", .m_size = -1,
    .m_methods = methods};

PyMODINIT_FUNC PyInit__gemv(void)
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
