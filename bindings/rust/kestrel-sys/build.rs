// Links libkestrel and tells dependents where it is.
//
// Where libkestrel.so is found, in this order:
//   1. KESTREL_LIB_DIR: the folder holding libkestrel.so (a CMake build's `lib/`, or an install's
//      `<prefix>/lib`). It must be absolute: cargo runs this script in the crate's own folder, so a
//      relative path would silently mean something else (the build stops with a message instead).
//   2. pkg-config: `pkg-config --variable=libdir kestrel` (an installed Kestrel; set
//      PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for a prefix outside the default search path).
//   3. Neither: the linker's default paths (e.g. /usr/local/lib after `ldconfig`).
// The folder (1 or 2) is passed to dependent build scripts as DEP_KESTREL_LIB_DIR (this crate
// `links = "kestrel"`) and becomes the rpath of this crate's own test binaries; the `kestrel`
// crate passes it on as DEP_KESTREL_RS_LIB_DIR for applications' build scripts (see its README).
use std::env;
use std::path::Path;
use std::process::Command;

fn pkg_config_libdir() -> Option<String> {
    let out = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(["--variable=libdir", "kestrel"])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !dir.is_empty()).then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-env-changed=KESTREL_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = match env::var("KESTREL_LIB_DIR") {
        Ok(dir) if !dir.is_empty() => {
            if !Path::new(&dir).is_absolute() {
                panic!(
                    "KESTREL_LIB_DIR={dir} is a relative path; cargo runs build scripts in the crate's \
                     own folder, so give an absolute one (e.g. KESTREL_LIB_DIR=\"$PWD/{dir}\")"
                );
            }
            Some((dir, "KESTREL_LIB_DIR"))
        }
        _ => pkg_config_libdir().map(|d| (d, "pkg-config")),
    };
    if let Some((dir, from)) = &dir {
        if !Path::new(dir).join("libkestrel.so").exists() {
            panic!(
                "{from} names {dir}, which holds no libkestrel.so (build Kestrel, or point \
                 KESTREL_LIB_DIR at <build>/lib or <prefix>/lib)"
            );
        }
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:lib_dir={dir}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-lib=dylib=kestrel");
}
