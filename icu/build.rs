//! Finds the system's ICU (Debian's `libicu-dev`) and its major version.
//!
//! ICU renames every C symbol with its major version (`uidna_openUTS46_72`),
//! so the bindings are generated here with the suffix of the ICU found.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FLUSHBED_ICU_VERSION");
    let version = env::var("FLUSHBED_ICU_VERSION").ok().or_else(|| {
        let out = Command::new("pkg-config")
            .args(["--modversion", "icu-uc"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let Some(version) = version else {
        panic!(
            "ICU not found: install Debian's libicu-dev and pkg-config \
             (apt-get install -y libicu-dev pkg-config), or set FLUSHBED_ICU_VERSION"
        );
    };
    let major = version.split('.').next().unwrap_or_default().to_string();
    if let Ok(out) = Command::new("pkg-config")
        .args(["--libs-only-L", "icu-uc"])
        .output()
    {
        for dir in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Some(dir) = dir.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }
    }
    println!("cargo:rustc-link-lib=dylib=icuuc");

    let bindings = format!(
        r#"extern "C" {{
    #[link_name = "uidna_openUTS46_{major}"]
    pub fn uidna_openUTS46(options: u32, error: *mut i32) -> *mut UIdna;
    #[link_name = "uidna_nameToASCII_UTF8_{major}"]
    pub fn uidna_nameToASCII_UTF8(
        idna: *const UIdna,
        name: *const u8,
        length: i32,
        dest: *mut u8,
        capacity: i32,
        info: *mut UIdnaInfo,
        error: *mut i32,
    ) -> i32;
    #[link_name = "ucasemap_open_{major}"]
    pub fn ucasemap_open(locale: *const u8, options: u32, error: *mut i32) -> *mut UCaseMap;
    #[link_name = "ucasemap_utf8FoldCase_{major}"]
    pub fn ucasemap_utf8FoldCase(
        csm: *const UCaseMap,
        dest: *mut u8,
        capacity: i32,
        src: *const u8,
        length: i32,
        error: *mut i32,
    ) -> i32;
}}
pub const ICU_VERSION: &str = "{version}";
"#
    );
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("icu_bindings.rs");
    fs::write(out, bindings).expect("write ICU bindings");
}
