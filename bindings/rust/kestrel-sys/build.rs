// Links libkestrel. KESTREL_LIB_DIR names the folder holding libkestrel.so (a CMake build's
// `lib/` folder or an install's `<prefix>/lib`); without it the linker's default paths are used.
// The folder is handed to dependent build scripts as DEP_KESTREL_LIB_DIR (this crate `links` kestrel),
// and this crate's own test binaries get it as their rpath (link-arg does not reach dependents).
use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=KESTREL_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(dir) = env::var("KESTREL_LIB_DIR") {
        if !dir.is_empty() {
            if !Path::new(&dir).join("libkestrel.so").exists() {
                println!("cargo:warning=KESTREL_LIB_DIR={dir} holds no libkestrel.so");
            }
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:lib_dir={dir}");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    println!("cargo:rustc-link-lib=dylib=kestrel");
}
