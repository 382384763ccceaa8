// Constrained output end to end (C API): sessions and engine requests under GBNF grammars and
// JSON schemas, greedy and sampled with several seeds, on stories260K (a 260K-parameter story
// model that never writes JSON on its own) and SmolLM2-135M-Instruct. Every output must end with
// EOS (the grammar allows it only at a complete sentence), parse, and satisfy its schema.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/models/real_model_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

using nlohmann::json;

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// `v` satisfies `schema` (the subset the compiler supports). Names the first violation.
std::string Violation(const json& schema, const json& v, const std::string& at = "#") {
  if (schema.contains("const")) return schema["const"] == v ? "" : at + ": not the const";
  if (schema.contains("enum")) {
    for (const json& e : schema["enum"]) {
      if (e == v) return "";
    }
    return at + ": not in the enum";
  }
  if (schema.contains("anyOf")) {
    for (const json& s : schema["anyOf"]) {
      if (Violation(s, v, at).empty()) return "";
    }
    return at + ": matches no anyOf branch";
  }
  const std::string type = schema.value("type", "");
  if (type == "object") {
    if (!v.is_object()) return at + ": not an object";
    for (const json& r : schema.value("required", json::array())) {
      if (!v.contains(r.get<std::string>())) return at + ": lacks " + r.get<std::string>();
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!schema["properties"].contains(it.key())) return at + ": unknown property " + it.key();
      std::string e = Violation(schema["properties"][it.key()], it.value(), at + "/" + it.key());
      if (!e.empty()) return e;
    }
    return "";
  }
  if (type == "array") {
    if (!v.is_array()) return at + ": not an array";
    if (v.size() < schema.value("minItems", 0u) || v.size() > schema.value("maxItems", 1000u)) {
      return at + ": item count";
    }
    for (size_t i = 0; i < v.size(); ++i) {
      std::string e = Violation(schema["items"], v[i], at + "/" + std::to_string(i));
      if (!e.empty()) return e;
    }
    return "";
  }
  if (type == "string") {
    if (!v.is_string()) return at + ": not a string";
    const size_t n = CodePoints(v.get<std::string>());
    return n >= schema.value("minLength", 0u) && n <= schema.value("maxLength", 100000u) ? "" : at + ": length";
  }
  if (type == "integer") return v.is_number_integer() ? "" : at + ": not an integer";
  if (type == "number") return v.is_number() ? "" : at + ": not a number";
  if (type == "boolean") return v.is_boolean() ? "" : at + ": not a boolean";
  if (type == "null") return v.is_null() ? "" : at + ": not null";
  return "";
}

struct GenRun {
  std::string text;
  kestrel_stop_reason_t stop = KESTREL_STOP_NONE;
};

// One generation on a fresh session; `temperature` 0 is greedy.
GenRun Generate(kestrel_model_t* model, const std::string& prompt, const char* grammar, const char* schema,
             float temperature, uint64_t seed, uint32_t max_new, bool chat_special = false,
             const kestrel_speculative_options_t* spec = nullptr, kestrel_speculative_stats_t* spec_stats = nullptr) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = temperature;
  so.seed = seed;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.sampler = &so;
  o.context_length = 512;
  o.speculative = spec;
  kestrel_session_t* raw = nullptr;
  StatusPtr st(kestrel_session_create(model, &o, &raw));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  SessionPtr session(raw);
  GenRun run;
  if (!session) return run;
  Collected c;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = max_new;
  g.on_token = Collected::OnToken;
  g.user_data = &c;
  g.grammar = grammar;
  g.json_schema = schema;
  g.parse_special = chat_special ? 1 : 0;
  kestrel_generate_stats_t stats{};
  stats.struct_size = sizeof(stats);
  KESTREL_EXPECT_OK(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &g, &stats));
  if (spec_stats != nullptr) {
    spec_stats->struct_size = sizeof(*spec_stats);
    KESTREL_EXPECT_OK(kestrel_session_speculative_stats(session.get(), spec_stats));
  }
  run.text = c.text;
  run.stop = stats.stop_reason;
  return run;
}

void ExpectValid(const GenRun& r, const json& schema, const std::string& what) {
  EXPECT_EQ(r.stop, KESTREL_STOP_EOS) << what << ": " << r.text;
  json v = json::parse(r.text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(v.is_discarded()) << what << ": not JSON: " << r.text;
  EXPECT_EQ(Violation(schema, v), "") << what << ": " << r.text;
}

class StoriesGrammar : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), TestDevice(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  RuntimePtr rt_;
  ModelPtr model_;
};

const char* kPersonSchema = R"({"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer"},
    "mood": {"enum": ["happy", "sad", "sleepy"]},
    "friends": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
    "pet": {"type": "object", "properties": {"kind": {"type": "string", "maxLength": 6},
                                             "legs": {"type": "integer"}},
            "required": ["kind"]}},
  "required": ["name", "age", "mood", "pet"]})";

TEST_F(StoriesGrammar, SchemaOutputsParseGreedyAndSampled) {
  const json schema = json::parse(kPersonSchema);
  // Without the constraint, this model writes a story, not JSON: the constraint is what works.
  const GenRun free = Generate(model_.get(), "Once upon a time", nullptr, nullptr, 0.0f, 1, 60);
  EXPECT_TRUE(json::parse(free.text, nullptr, false).is_discarded()) << free.text;
  ExpectValid(Generate(model_.get(), "Once upon a time", nullptr, kPersonSchema, 0.0f, 1, 400), schema, "greedy");
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    ExpectValid(Generate(model_.get(), "Lily had a", nullptr, kPersonSchema, 1.0f, seed, 400), schema,
                "seed " + std::to_string(seed));
  }
}

TEST_F(StoriesGrammar, GbnfOutputsAreSentencesOfTheGrammar) {
  const char* gbnf = R"(root ::= who " " verb " " ( "the " thing | num " " thing "s" ) "."
who ::= "Tom" | "Lily" | "The dog"
verb ::= "saw" | "ate" | "liked"
thing ::= "ball" | "cake" | "tree"
num ::= [2-9]
)";
  std::set<std::string> seen;
  for (uint64_t seed : {0u, 7u, 8u, 9u}) {
    const GenRun r = Generate(model_.get(), "Once upon a time", gbnf, nullptr, seed == 0 ? 0.0f : 1.2f, seed, 60);
    EXPECT_EQ(r.stop, KESTREL_STOP_EOS) << r.text;
    // Every sentence of this grammar: who verb (the thing | N things).
    bool ok = false;
    for (const char* who : {"Tom", "Lily", "The dog"}) {
      for (const char* verb : {"saw", "ate", "liked"}) {
        for (const char* thing : {"ball", "cake", "tree"}) {
          const std::string head = std::string(who) + " " + verb + " ";
          ok |= r.text == head + "the " + thing + ".";
          for (char n = '2'; n <= '9'; ++n) ok |= r.text == head + n + " " + thing + "s.";
        }
      }
    }
    EXPECT_TRUE(ok) << "seed " << seed << ": " << r.text;
    seen.insert(r.text);
  }
  EXPECT_GE(seen.size(), 2u);  // sampling still samples
}

TEST_F(StoriesGrammar, EngineRequestsAndForksAreConstrained) {
  kestrel_engine_options_t eo;
  kestrel_engine_options_init(&eo);
  eo.context_length = 512;
  kestrel_engine_t* engine = nullptr;
  KESTREL_ASSERT_OK(kestrel_engine_create(model_.get(), &eo, &engine));
  const json schema = json::parse(kPersonSchema);
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 1.0f;
  so.seed = 11;
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = 400;
  ro.sampler = &so;
  ro.n = 3;  // forks of one prompt, each with its own grammar state
  ro.json_schema = kPersonSchema;
  const std::string prompt = "The little bird";
  kestrel_request_id_t ids[2];
  KESTREL_ASSERT_OK(kestrel_engine_submit(engine, prompt.data(), prompt.size(), &ro, &ids[0]));
  ro.n = 1;
  ro.json_schema = nullptr;
  ro.grammar = "root ::= \"[\" [0-9]{1,3} ( \",\" [0-9]{1,3} ){2} \"]\"\n";
  KESTREL_ASSERT_OK(kestrel_engine_submit(engine, prompt.data(), prompt.size(), &ro, &ids[1]));
  KESTREL_ASSERT_OK(kestrel_engine_wait(engine, KESTREL_ENGINE_ALL_REQUESTS, -1));
  for (uint32_t sample = 0; sample < 4; ++sample) {
    const kestrel_request_id_t id = sample < 3 ? ids[0] : ids[1];
    const uint32_t index = sample < 3 ? sample : 0;
    size_t n = 0;
    KESTREL_ASSERT_OK(kestrel_engine_request_text(engine, id, index, nullptr, 0, &n));
    std::string text(n, '\0');
    KESTREL_ASSERT_OK(kestrel_engine_request_text(engine, id, index, text.data(), n, &n));
    kestrel_engine_result_t res;
    res.struct_size = sizeof(res);
    KESTREL_ASSERT_OK(kestrel_engine_request_result(engine, id, index, &res));
    EXPECT_EQ(res.stop_reason, KESTREL_STOP_EOS) << text;
    json v = json::parse(text, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << text;
    if (sample < 3) {
      EXPECT_EQ(Violation(schema, v), "") << text;
    } else {
      ASSERT_TRUE(v.is_array() && v.size() == 3) << text;
    }
  }
  kestrel_engine_destroy(engine);
}

// Speculation is turned off for a constrained run: nothing is drafted, the output still parses;
// the next unconstrained run of the same session speculates again.
TEST_F(StoriesGrammar, SpeculationIsOffForConstrainedRuns) {
  kestrel_speculative_options_t spec;
  kestrel_speculative_options_init(&spec);
  spec.method = KESTREL_SPEC_NGRAM;
  kestrel_speculative_stats_t st;
  const GenRun r = Generate(model_.get(), "Once upon a time", nullptr, kPersonSchema, 0.0f, 1, 400, false, &spec, &st);
  ExpectValid(r, json::parse(kPersonSchema), "speculative session");
  EXPECT_EQ(st.drafted, 0u);
  EXPECT_EQ(st.steps, 0u);
  // Unconstrained, the same configuration does draft (this story model repeats itself).
  const GenRun free = Generate(model_.get(), "Once upon a time", nullptr, nullptr, 0.0f, 1, 100, false, &spec, &st);
  EXPECT_GT(st.drafted, 0u);
}

TEST_F(StoriesGrammar, BadGrammarsAreRefusedWithTheirPosition) {
  SessionPtr session = MakeGreedySession(model_.get());
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.grammar = "root ::= \"a\" | [z-a]\n";
  StatusPtr s(kestrel_session_generate(session.get(), "x", 1, &g, nullptr));
  ASSERT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("options->grammar: grammar line 1, column 17"),
            std::string::npos) << kestrel_status_message(s.get());
  g.grammar = nullptr;
  g.json_schema = R"({"type": "string", "format": "date"})";
  s.reset(kestrel_session_generate(session.get(), "x", 1, &g, nullptr));
  ASSERT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("unsupported keyword 'format' at #"),
            std::string::npos) << kestrel_status_message(s.get());
  g.grammar = "root ::= \"a\"\n";
  s.reset(kestrel_session_generate(session.get(), "x", 1, &g, nullptr));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);  // both set
  // Characters outside the vocabulary's texts still come through byte tokens (<0xF0> ...), split
  // across several tokens: the output is the one emoji.
  g.json_schema = nullptr;
  g.grammar = "root ::= [\\U0001F600-\\U0001F64F]\n";
  Collected c;
  g.on_token = Collected::OnToken;
  g.user_data = &c;
  KESTREL_EXPECT_OK(kestrel_session_generate(session.get(), "x", 1, &g, nullptr));
  EXPECT_EQ(c.text.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(c.text[0]), 0xF0u);
  g.on_token = nullptr;
  // The session still works unconstrained afterwards.
  g.grammar = nullptr;
  g.max_new_tokens = 4;
  KESTREL_EXPECT_OK(kestrel_session_generate(session.get(), "x", 1, &g, nullptr));
}

TEST(SmolLM2Grammar, ChatJsonSchemaGreedyAndSampled) {
  const std::string path = ModelCache() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  KESTREL_REAL_MODEL_OR_SKIP(path);
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), path, "cpu", &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const char* schema_text = R"({"type": "object", "properties": {
      "city": {"type": "string", "maxLength": 40},
      "country": {"type": "string", "maxLength": 40},
      "population_millions": {"type": "number"},
      "is_capital": {"type": "boolean"},
      "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 1, "maxItems": 3}},
    "required": ["city", "country", "is_capital", "landmarks"]})";
  const json schema = json::parse(schema_text);
  const std::string prompt =
      "<|im_start|>user\nDescribe Paris as a JSON object with the fields city, country, "
      "population_millions, is_capital and landmarks.<|im_end|>\n<|im_start|>assistant\n";
  ExpectValid(Generate(model.get(), prompt, nullptr, schema_text, 0.0f, 1, 300, true), schema, "greedy");
  for (uint64_t seed : {21u, 22u, 23u}) {
    ExpectValid(Generate(model.get(), prompt, nullptr, schema_text, 0.8f, seed, 300, true), schema,
                "seed " + std::to_string(seed));
  }
  // Any JSON object (the server's json_object mode).
  const GenRun any = Generate(model.get(), prompt, nullptr, R"({"type": "object"})", 0.0f, 1, 300, true);
  EXPECT_EQ(any.stop, KESTREL_STOP_EOS) << any.text;
  json v = json::parse(any.text, nullptr, false);
  EXPECT_TRUE(v.is_object()) << any.text;
}

}  // namespace
}  // namespace kestrel::testing
