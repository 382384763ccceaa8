// The folder of libkestrel.so that kestrel-sys found (KESTREL_LIB_DIR or pkg-config, see its
// build.rs): the rpath of this crate's test and doc-test binaries, so `cargo test` runs without
// LD_LIBRARY_PATH, and passed on to applications' build scripts as DEP_KESTREL_RS_LIB_DIR (this
// crate declares `links = "kestrel_rs"` for that), which they turn into their own rpath:
//
//     fn main() {
//         if let Ok(dir) = std::env::var("DEP_KESTREL_RS_LIB_DIR") {
//             println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
//         }
//     }
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_KESTREL_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_KESTREL_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:lib_dir={dir}");
    }
}
