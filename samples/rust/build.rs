// Runs without LD_LIBRARY_PATH from a build tree: the folder of libkestrel.so (KESTREL_LIB_DIR,
// as for the kestrel-sys crate) becomes the binary's rpath.
fn main() {
    println!("cargo:rerun-if-env-changed=KESTREL_LIB_DIR");
    if let Ok(dir) = std::env::var("KESTREL_LIB_DIR") {
        if !dir.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
