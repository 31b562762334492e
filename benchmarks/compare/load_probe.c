/*
 * load_probe: how long llama.cpp's C API takes to load a model and how much memory the
 * process peaks at, with nothing of Python in between (the llama.cpp side of the load part of the
 * performance harness).
 *
 *   load_probe MODEL N_CTX N_THREADS N_PROMPT N_GEN
 *
 * Loads MODEL on the CPU with llama_model_default_params() (mmap), creates a context of
 * N_CTX tokens (n_batch = n_ubatch = 512, N_THREADS threads), decodes N_PROMPT tokens (BOS,
 * then ids 1000, 1001, ...) and N_GEN more single tokens chosen greedily. Prints one JSON
 * line: the wall time of each step in milliseconds and the peak RSS (VmHWM) in KiB.
 * Exit status: 0 on success, 1 on a llama.cpp failure, 2 on bad arguments.
 */

#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void quiet_log(enum ggml_log_level level, const char * text, void * user_data) {
    (void) level;
    (void) text;
    (void) user_data;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Peak RSS of this process image: VmHWM. getrusage's ru_maxrss would not do, as Linux
 * carries the parent's peak across fork and execve into it. */
static long max_rss_kb(void) {
    FILE * status = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (status == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, status) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(status);
    return kb;
}

int main(int argc, char ** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL N_CTX N_THREADS N_PROMPT N_GEN\n", argv[0]);
        return 2;
    }
    const int n_ctx = atoi(argv[2]);
    const int n_threads = atoi(argv[3]);
    const int n_prompt = atoi(argv[4]);
    const int n_gen = atoi(argv[5]);
    if (n_ctx <= 0 || n_threads <= 0 || n_prompt <= 0 || n_prompt > 512 || n_gen < 0 ||
        n_prompt + n_gen > n_ctx) {
        fprintf(stderr, "load_probe: bad sizes\n");
        return 2;
    }
    llama_log_set(quiet_log, NULL);
    const double t0 = now_ms();
    llama_backend_init();
    struct llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    struct llama_model * model = llama_model_load_from_file(argv[1], mparams);
    if (model == NULL) {
        fprintf(stderr, "load_probe: cannot load %s\n", argv[1]);
        return 1;
    }
    const double t1 = now_ms();
    const long rss_loaded = max_rss_kb();
    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = (uint32_t) n_ctx;
    cparams.n_batch = 512;
    cparams.n_ubatch = 512;
    cparams.n_threads = n_threads;
    cparams.n_threads_batch = n_threads;
    struct llama_context * ctx = llama_init_from_model(model, cparams);
    if (ctx == NULL) {
        fprintf(stderr, "load_probe: cannot create a context\n");
        return 1;
    }
    const double t2 = now_ms();
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    llama_token * prompt = malloc(sizeof(llama_token) * (size_t) n_prompt);
    prompt[0] = llama_vocab_bos(vocab);
    for (int i = 1; i < n_prompt; i++) {
        prompt[i] = 1000 + i;
    }
    if (llama_decode(ctx, llama_batch_get_one(prompt, n_prompt)) != 0) {
        fprintf(stderr, "load_probe: decode failed\n");
        return 1;
    }
    struct llama_sampler * greedy = llama_sampler_init_greedy();
    llama_token token = llama_sampler_sample(greedy, ctx, -1);
    const double t3 = now_ms();
    for (int i = 0; i < n_gen; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) {
            fprintf(stderr, "load_probe: decode failed\n");
            return 1;
        }
        token = llama_sampler_sample(greedy, ctx, -1);
    }
    const double t4 = now_ms();
    printf("{\"load_ms\": %.3f, \"context_ms\": %.3f, \"prompt_ms\": %.3f, \"gen_ms\": %.3f, "
           "\"maxrss_loaded_kb\": %ld, \"maxrss_kb\": %ld}\n",
           t1 - t0, t2 - t1, t3 - t2, t4 - t3, rss_loaded, max_rss_kb());
    llama_sampler_free(greedy);
    free(prompt);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
