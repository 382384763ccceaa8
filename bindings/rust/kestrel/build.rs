// Gives this crate's test (and doc-test) binaries the folder of libkestrel.so (from kestrel-sys, which reads
// KESTREL_LIB_DIR) as their rpath, so `cargo test` runs without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_KESTREL_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_KESTREL_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
