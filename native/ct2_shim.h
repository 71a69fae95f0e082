/* ct2_shim.h: a plain C interface to CTranslate2's Whisper (our own shim,
 * native/ct2_shim.cpp), so Rust links against the prebuilt CTranslate2 of the
 * PyPI wheel without C++ bindings. Every call catches C++ exceptions: a
 * failure returns NULL (or a negative count) and writes a message into the
 * caller's `err` buffer (NUL-terminated, truncated to `err_len`). */
#ifndef CT2_SHIM_H
#define CT2_SHIM_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct2s_model ct2s_model;     /* weights, shared by the replicas */
typedef struct ct2s_replica ct2s_replica; /* one worker's encoder + decoder */
typedef struct ct2s_encoded ct2s_encoded; /* a batch's encoder output */
typedef struct ct2s_results ct2s_results; /* a batch's decoding results */
typedef struct ct2s_alignment ct2s_alignment;

typedef struct {
  size_t beam_size;
  size_t max_length;
  float sampling_temperature;
  size_t sampling_topk;
} ct2s_options;

ct2s_model *ct2s_model_load(const char *dir, const char *compute_type, char *err, size_t err_len);
void ct2s_model_free(ct2s_model *model);

/* Sets the calling thread's CTranslate2 (OpenMP) thread count. */
void ct2s_set_num_threads(size_t threads);

ct2s_replica *ct2s_replica_new(const ct2s_model *model, char *err, size_t err_len);
void ct2s_replica_free(ct2s_replica *replica);
int ct2s_replica_multilingual(const ct2s_replica *replica);
size_t ct2s_replica_n_mels(const ct2s_replica *replica);

/* features: batch × n_mels × frames f32, row-major. */
ct2s_encoded *ct2s_encode(ct2s_replica *replica, const float *features, size_t batch,
                          size_t n_mels, size_t frames, char *err, size_t err_len);
void ct2s_encoded_free(ct2s_encoded *encoded);

/* The most likely language token (e.g. "<|en|>") of the batch's first item,
 * written into `out`; 0 on success, -1 on failure. */
int ct2s_detect_language(ct2s_replica *replica, const ct2s_encoded *encoded, char *out,
                         size_t out_len, char *err, size_t err_len);

/* One prompt (token ids) for every item of the batch. */
ct2s_results *ct2s_generate(ct2s_replica *replica, const ct2s_encoded *encoded,
                            const size_t *prompt, size_t prompt_len,
                            const ct2s_options *options, char *err, size_t err_len);
size_t ct2s_results_count(const ct2s_results *results);
/* The item's best sequence (ids only); *ids points into the results. */
size_t ct2s_results_ids(const ct2s_results *results, size_t item, const size_t **ids);
float ct2s_results_score(const ct2s_results *results, size_t item);
float ct2s_results_no_speech(const ct2s_results *results, size_t item);
void ct2s_results_free(ct2s_results *results);

/* tokens: the text tokens of every item, concatenated; lengths[item] each.
 * num_frames[item]: the mel frames holding audio. */
ct2s_alignment *ct2s_align(ct2s_replica *replica, const ct2s_encoded *encoded,
                           const size_t *start_sequence, size_t start_len,
                           const size_t *tokens, const size_t *lengths,
                           const size_t *num_frames, size_t batch,
                           long median_filter_width, char *err, size_t err_len);
/* The item's (token, frame) path as pairs in *pairs (2 × count longs). */
size_t ct2s_alignment_path(const ct2s_alignment *alignment, size_t item, const long **pairs);
void ct2s_alignment_free(ct2s_alignment *alignment);

#ifdef __cplusplus
}
#endif
#endif
