// tools/synth/synth_vocab.h: a synthetic SentencePiece-style ("llama") vocab of any size >= 259.
//
// Layout (what llama.cpp's Llama-2 vocab looks like, so any SPM reader accepts it):
//   0 <unk> (UNKNOWN), 1 <s> (CONTROL, BOS), 2 </s> (CONTROL, EOS),
//   3..258 the byte tokens <0x00>..<0xFF> (BYTE), so every byte string is representable,
//   then NORMAL pieces, all distinct: '▁' (U+2581, the SPM space), single letters, digits and
//   ASCII punctuation, '▁' + letter/digit, lowercase bigrams, '▁' + bigram, lowercase trigrams,
//   '▁' + trigram, then longer lowercase n-grams until the vocab is full.
// Scores: 0 for special and byte tokens, -i for the i-th piece (shorter pieces merge first).
// The result depends only on `size`.
#ifndef KESTREL_TOOLS_SYNTH_SYNTH_VOCAB_H_
#define KESTREL_TOOLS_SYNTH_SYNTH_VOCAB_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kestrel::synth {

struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> token_types;  // GGUF tokenizer.ggml.token_type values
};

inline constexpr int32_t kUnkId = 0;
inline constexpr int32_t kBosId = 1;
inline constexpr int32_t kEosId = 2;
inline constexpr uint32_t kMinVocab = 259;

// size >= kMinVocab (checked by ValidateShape); a smaller size is raised to kMinVocab.
SynthVocab BuildSynthVocab(uint32_t size);

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_SYNTH_VOCAB_H_
