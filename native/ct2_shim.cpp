// ct2_shim.cpp: see ct2_shim.h. Built by build.rs (feature `ct2`) against
// CTranslate2's headers and linked to the wheel's libctranslate2 (both
// fetched by scripts/fetch-ct2.sh, never committed).
#include "ct2_shim.h"

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "ctranslate2/models/whisper.h"
#include "ctranslate2/utils.h"

namespace ct2 = ctranslate2;

struct ct2s_model {
  std::shared_ptr<const ct2::models::Model> model;
};
struct ct2s_replica {
  std::unique_ptr<ct2::models::WhisperReplica> replica;
};
struct ct2s_encoded {
  ct2::StorageView view;
};
struct ct2s_results {
  std::vector<ct2::models::WhisperGenerationResult> items;
};
struct ct2s_alignment {
  std::vector<std::vector<long>> paths;
};

namespace {
void write_error(char *err, size_t err_len, const char *message) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, message, err_len - 1);
  err[err_len - 1] = '\0';
}

template <typename F>
auto guard(char *err, size_t err_len, F &&body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception &error) {
    write_error(err, err_len, error.what());
  } catch (...) {
    write_error(err, err_len, "unknown C++ exception");
  }
  return nullptr;
}
}  // namespace

extern "C" {

ct2s_model *ct2s_model_load(const char *dir, const char *compute_type, char *err, size_t err_len) {
  return guard(err, err_len, [&]() -> ct2s_model * {
    auto compute = ct2::str_to_compute_type(compute_type);
    auto model = ct2::models::Model::load(dir, ct2::Device::CPU, 0, compute);
    return new ct2s_model{std::move(model)};
  });
}

void ct2s_model_free(ct2s_model *model) { delete model; }

void ct2s_set_num_threads(size_t threads) {
  try {
    ct2::set_num_threads(threads);
  } catch (...) {
  }
}

ct2s_replica *ct2s_replica_new(const ct2s_model *model, char *err, size_t err_len) {
  return guard(err, err_len, [&]() -> ct2s_replica * {
    auto replica = ct2::models::WhisperReplica::create_from_model(*model->model);
    return new ct2s_replica{std::move(replica)};
  });
}

void ct2s_replica_free(ct2s_replica *replica) { delete replica; }

int ct2s_replica_multilingual(const ct2s_replica *replica) {
  return replica->replica->is_multilingual() ? 1 : 0;
}

size_t ct2s_replica_n_mels(const ct2s_replica *replica) { return replica->replica->n_mels(); }

ct2s_encoded *ct2s_encode(ct2s_replica *replica, const float *features, size_t batch,
                          size_t n_mels, size_t frames, char *err, size_t err_len) {
  return guard(err, err_len, [&]() -> ct2s_encoded * {
    ct2::Shape shape{static_cast<ct2::dim_t>(batch), static_cast<ct2::dim_t>(n_mels),
                     static_cast<ct2::dim_t>(frames)};
    // A view on the caller's buffer: encode reads it and returns new storage.
    ct2::StorageView input(std::move(shape), const_cast<float *>(features));
    auto output = replica->replica->encode(std::move(input), true);
    return new ct2s_encoded{std::move(output)};
  });
}

void ct2s_encoded_free(ct2s_encoded *encoded) { delete encoded; }

int ct2s_detect_language(ct2s_replica *replica, const ct2s_encoded *encoded, char *out,
                         size_t out_len, char *err, size_t err_len) {
  try {
    auto ranked = replica->replica->detect_language(ct2::StorageView(encoded->view));
    if (ranked.empty() || ranked.front().empty()) {
      write_error(err, err_len, "no language detected");
      return -1;
    }
    write_error(out, out_len, ranked.front().front().first.c_str());
    return 0;
  } catch (const std::exception &error) {
    write_error(err, err_len, error.what());
  } catch (...) {
    write_error(err, err_len, "unknown C++ exception");
  }
  return -1;
}

ct2s_results *ct2s_generate(ct2s_replica *replica, const ct2s_encoded *encoded,
                            const size_t *prompt, size_t prompt_len,
                            const ct2s_options *options, char *err, size_t err_len) {
  return guard(err, err_len, [&]() -> ct2s_results * {
    const auto batch = static_cast<size_t>(encoded->view.dim(0));
    std::vector<std::vector<size_t>> prompts(batch,
                                             std::vector<size_t>(prompt, prompt + prompt_len));
    ct2::models::WhisperOptions whisper;
    whisper.beam_size = options->beam_size;
    whisper.max_length = options->max_length;
    whisper.sampling_temperature = options->sampling_temperature;
    whisper.sampling_topk = options->sampling_topk;
    whisper.return_scores = true;
    whisper.return_no_speech_prob = true;
    auto items = replica->replica->generate(ct2::StorageView(encoded->view), prompts, whisper);
    return new ct2s_results{std::move(items)};
  });
}

size_t ct2s_results_count(const ct2s_results *results) { return results->items.size(); }

size_t ct2s_results_ids(const ct2s_results *results, size_t item, const size_t **ids) {
  *ids = nullptr;
  if (item >= results->items.size() || results->items[item].sequences_ids.empty()) return 0;
  const auto &best = results->items[item].sequences_ids.front();
  *ids = best.data();
  return best.size();
}

float ct2s_results_score(const ct2s_results *results, size_t item) {
  if (item >= results->items.size() || results->items[item].scores.empty()) return 0.0f;
  return results->items[item].scores.front();
}

float ct2s_results_no_speech(const ct2s_results *results, size_t item) {
  if (item >= results->items.size()) return 0.0f;
  return results->items[item].no_speech_prob;
}

void ct2s_results_free(ct2s_results *results) { delete results; }

ct2s_alignment *ct2s_align(ct2s_replica *replica, const ct2s_encoded *encoded,
                           const size_t *start_sequence, size_t start_len,
                           const size_t *tokens, const size_t *lengths,
                           const size_t *num_frames, size_t batch,
                           long median_filter_width, char *err, size_t err_len) {
  return guard(err, err_len, [&]() -> ct2s_alignment * {
    std::vector<size_t> start(start_sequence, start_sequence + start_len);
    std::vector<std::vector<size_t>> text(batch);
    size_t offset = 0;
    for (size_t i = 0; i < batch; ++i) {
      text[i].assign(tokens + offset, tokens + offset + lengths[i]);
      offset += lengths[i];
    }
    std::vector<size_t> frames(num_frames, num_frames + batch);
    auto results = replica->replica->align(ct2::StorageView(encoded->view), start, text,
                                           std::move(frames), median_filter_width);
    auto out = std::make_unique<ct2s_alignment>();
    for (const auto &result : results) {
      std::vector<long> path;
      path.reserve(result.alignments.size() * 2);
      for (const auto &pair : result.alignments) {
        path.push_back(static_cast<long>(pair.first));
        path.push_back(static_cast<long>(pair.second));
      }
      out->paths.push_back(std::move(path));
    }
    return out.release();
  });
}

size_t ct2s_alignment_path(const ct2s_alignment *alignment, size_t item, const long **pairs) {
  *pairs = nullptr;
  if (item >= alignment->paths.size()) return 0;
  *pairs = alignment->paths[item].data();
  return alignment->paths[item].size() / 2;
}

void ct2s_alignment_free(ct2s_alignment *alignment) { delete alignment; }

}  // extern "C"
