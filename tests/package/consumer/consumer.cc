// Package-test consumer in C++17 over kestrel.hpp: generates greedily and prints exactly the
// generated text.
//   consumer_cpp MODEL.gguf PROMPT N_TOKENS [DEVICE]
// Exit status: 0 success, 1 library error (printed), 2 bad usage.
#include <kestrel/kestrel.hpp>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: consumer_cpp MODEL.gguf PROMPT N_TOKENS [DEVICE]\n";
    return 2;
  }
  try {
    kestrel::Runtime runtime;
    kestrel::ModelOptions mo;
    if (argc == 5) mo.device = argv[4];
    kestrel::Model model = runtime.LoadModel(argv[1], mo);
    kestrel::SessionOptions so;
    so.sampler = kestrel::SamplerOptions::Greedy();
    kestrel::Session session(model, so);
    kestrel::GenerateOptions go;
    go.max_new_tokens = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10));
    session.Generate(argv[2], go, [](int32_t, std::string_view text) {
      std::cout.write(text.data(), static_cast<std::streamsize>(text.size()));
    });
    std::cout.flush();
  } catch (const kestrel::Error& e) {
    std::cerr << "consumer_cpp: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
