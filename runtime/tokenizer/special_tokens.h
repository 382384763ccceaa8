// runtime/tokenizer/special_tokens.h: what SPM and BPE vocabs share about special tokens, as
// llama.cpp (llama-vocab.cpp) determines it: the token attributes after its text-based fix-ups,
// the end-of-generation set, and the partition of a text at special-token texts that runs
// before either algorithm sees the text.
//
// Thread-safety: immutable after Build; Split is const and safe to call concurrently.
#ifndef KESTREL_RUNTIME_TOKENIZER_SPECIAL_TOKENS_H_
#define KESTREL_RUNTIME_TOKENIZER_SPECIAL_TOKENS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel::runtime {

// One piece of a text after the special-token partition: a special token (token >= 0) or a run of
// ordinary text (token == -1) to be tokenized by the vocab's algorithm.
struct TextFragment {
  int32_t token;
  absl::string_view text;
};

// The special ids a GGUF names (-1: absent) and the per-model strip rules llama.cpp applies.
struct SpecialIds {
  int32_t eos_id = -1;
  int32_t eot_id = -1;  // tokenizer.ggml.eot_token_id; detected by text when absent
  int32_t eom_id = -1;  // tokenizer.ggml.eom_token_id; detected by text when absent
  // llama.cpp gives every special token of a Phi-3 model (general.name contains "phi-3"/"phi3")
  // the RSTRIP attribute: whitespace after it is dropped when the text is partitioned.
  bool phi3_rstrip = false;
};

class SpecialTokens {
 public:
  // `types` are the GGUF token types (VocabTokenType); they are updated in place the way
  // llama.cpp updates its attributes: a token whose text marks an end of turn (<|eot_id|>,
  // <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, ...) becomes CONTROL. `ids->eot_id` and
  // `ids->eom_id` are filled from the texts when absent. `tokens` and `types` have equal sizes.
  static SpecialTokens Build(const std::vector<std::string>& tokens, std::vector<int32_t>& types,
                             SpecialIds* ids);

  // True for EOS, EOT, EOM and every token llama.cpp lists as ending a generation by its text.
  bool IsEndOfGeneration(int32_t id) const { return eog_.contains(id); }
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_sorted_; }

  // llama.cpp's tokenizer_st_partition: each special token in turn, longest text first (ties by
  // id), cuts its non-overlapping occurrences, leftmost first, out of the text runs that earlier
  // (longer) tokens left. USER_DEFINED tokens always take part; CONTROL and UNKNOWN ones only with
  // parse_special. Appends to `out` (text views point into `text`). Finds all occurrences in one
  // pass over the text with a trie, so the cost does not grow with the number of special tokens.
  void Split(absl::string_view text, bool parse_special, std::vector<TextFragment>* out) const;

 private:
  struct Candidate {
    int32_t id;
    uint32_t length;
    bool user_defined;  // matched even without parse_special
    bool lstrip;
    bool rstrip;
  };
  // A byte trie over some candidates' texts (node 0 is the root), with a filter that rules most
  // text positions out before any lookup: first2_ holds every candidate's first two bytes (bit
  // b0 << 8 | b1) and single_ the bytes that are whole one-byte candidates.
  struct Trie {
    std::vector<int32_t> root;                     // 256 entries, -1 = none
    absl::flat_hash_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> node, below the root
    std::vector<int32_t> terminal;                 // node -> index into candidates_, or -1
    std::vector<uint64_t> first2 = std::vector<uint64_t>(1024, 0);
    std::vector<uint64_t> single = std::vector<uint64_t>(4, 0);
    bool empty = true;
    void Add(absl::string_view text, int32_t candidate);
    int32_t Child(int32_t node, uint8_t byte) const;
    // Appends (candidate, start) for every occurrence, grouped by candidate, starts ascending.
    void FindAll(absl::string_view text, std::vector<std::pair<uint32_t, uint32_t>>* found) const;
  };

  std::vector<Candidate> candidates_;  // in priority order (longest first, then by id)
  Trie all_;   // every candidate (parse_special)
  Trie user_;  // USER_DEFINED ones only
  absl::flat_hash_set<int32_t> eog_;
  std::vector<int32_t> eog_sorted_;
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_SPECIAL_TOKENS_H_
