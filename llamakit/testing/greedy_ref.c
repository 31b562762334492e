/*
 * greedy_ref: a reference greedy decoder on llama.cpp's C API, with nothing of llamakit
 * in between. Tests compare llamakit's greedy output against it token for token.
 *
 *   greedy_ref MODEL N_PREDICT N_CTX TOKEN...
 *
 * Loads MODEL on the CPU (n_gpu_layers 0), creates a context of N_CTX tokens (n_batch =
 * N_CTX, one thread, so that the result does not depend on the machine's core count),
 * decodes the prompt token ids in one llama_batch_get_one batch, then samples up to
 * N_PREDICT tokens with a chain holding only llama_sampler_init_greedy(), decoding each.
 * Generation stops early at an end-of-generation token (llama_vocab_is_eog), which is not
 * printed. The generated ids are printed space-separated on one line to stdout.
 *
 * Exit status: 0 on success, 1 on a llama.cpp failure, 2 on bad arguments, 3 when the
 * context fills up before N_PREDICT tokens (nothing is printed then).
 */

#include "llama.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static void quiet_log(enum ggml_log_level level, const char * text, void * user_data) {
    (void) level;
    (void) text;
    (void) user_data;
}

static int parse_long(const char * text, long min, long max, long * out) {
    char * end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        return 0;
    }
    *out = value;
    return 1;
}

static int usage(const char * argv0) {
    fprintf(stderr, "usage: %s MODEL N_PREDICT N_CTX TOKEN...\n", argv0);
    return 2;
}

int main(int argc, char ** argv) {
    if (argc < 5) {
        return usage(argv[0]);
    }
    long n_predict = 0;
    long n_ctx = 0;
    if (!parse_long(argv[2], 0, 1L << 30, &n_predict) || !parse_long(argv[3], 1, 1L << 30, &n_ctx)) {
        return usage(argv[0]);
    }
    const int n_prompt = argc - 4;
    if (n_prompt > n_ctx) {
        fprintf(stderr, "greedy_ref: %d prompt tokens do not fit N_CTX %ld\n", n_prompt, n_ctx);
        return 2;
    }

    llama_log_set(quiet_log, NULL);
    llama_backend_init();

    struct llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    struct llama_model * model = llama_model_load_from_file(argv[1], mparams);
    if (model == NULL) {
        fprintf(stderr, "greedy_ref: cannot load model %s\n", argv[1]);
        llama_backend_free();
        return 1;
    }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    llama_token * prompt = malloc(sizeof(llama_token) * (size_t) n_prompt);
    if (prompt == NULL) {
        fprintf(stderr, "greedy_ref: out of memory\n");
        llama_model_free(model);
        llama_backend_free();
        return 1;
    }
    for (int i = 0; i < n_prompt; i++) {
        long token = 0;
        if (!parse_long(argv[4 + i], 0, (long) n_vocab - 1, &token)) {
            fprintf(stderr, "greedy_ref: bad token id '%s' (vocabulary has %d tokens)\n",
                    argv[4 + i], n_vocab);
            free(prompt);
            llama_model_free(model);
            llama_backend_free();
            return 2;
        }
        prompt[i] = (llama_token) token;
    }

    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = (uint32_t) n_ctx;
    cparams.n_batch = (uint32_t) n_ctx;
    cparams.n_threads = 1;
    cparams.n_threads_batch = 1;
    cparams.no_perf = true;
    struct llama_context * ctx = llama_init_from_model(model, cparams);
    if (ctx == NULL) {
        fprintf(stderr, "greedy_ref: cannot create a context of %ld tokens\n", n_ctx);
        free(prompt);
        llama_model_free(model);
        llama_backend_free();
        return 1;
    }

    struct llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());

    int status = 0;
    int rc = llama_decode(ctx, llama_batch_get_one(prompt, n_prompt));
    if (rc != 0) {
        fprintf(stderr, "greedy_ref: llama_decode of the prompt failed (%d)\n", rc);
        status = 1;
    }

    llama_token * generated = malloc(sizeof(llama_token) * (size_t) (n_predict > 0 ? n_predict : 1));
    long n_generated = 0;
    long n_past = n_prompt;
    if (generated == NULL) {
        fprintf(stderr, "greedy_ref: out of memory\n");
        status = 1;
    }
    while (status == 0 && n_generated < n_predict) {
        llama_token token = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, token)) {
            break;
        }
        generated[n_generated++] = token;
        if (n_generated == n_predict) {
            break;  /* the last token needs no decode */
        }
        if (n_past >= n_ctx) {
            fprintf(stderr, "greedy_ref: the context (%ld tokens) is full after %ld tokens\n",
                    n_ctx, n_generated);
            status = 3;
            break;
        }
        rc = llama_decode(ctx, llama_batch_get_one(&token, 1));
        if (rc != 0) {
            fprintf(stderr, "greedy_ref: llama_decode failed (%d) at position %ld\n", rc, n_past);
            status = 1;
            break;
        }
        n_past++;
    }

    if (status == 0) {
        for (long i = 0; i < n_generated; i++) {
            printf(i == 0 ? "%d" : " %d", generated[i]);
        }
        printf("\n");
        fflush(stdout);
    }

    free(generated);
    free(prompt);
    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return status;
}
