// Runs without LD_LIBRARY_PATH: the folder the kestrel crate linked libkestrel.so from
// (KESTREL_LIB_DIR or pkg-config) becomes this program's rpath. Any application using the kestrel
// crate does the same (bindings/rust/README.md).
fn main() {
    if let Ok(dir) = std::env::var("DEP_KESTREL_RS_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
