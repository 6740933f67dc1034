//! The one place a kernel test may decline to run: it prints why, and `DAEHWA_REQUIRE_ALL=1`
//! (set by `.ci/run`) turns the skip into a failure. A path whose unit this CPU does not have is
//! not a skip (there is nothing to run it on) and is only noted.
#![allow(dead_code)]

/// Whether every test must run (`DAEHWA_REQUIRE_ALL=1`).
pub fn required() -> bool {
    std::env::var("DAEHWA_REQUIRE_ALL").as_deref() == Ok("1")
}

/// `test` cannot run here because of `why`: a failure under `DAEHWA_REQUIRE_ALL=1`, a printed
/// notice otherwise (straight to the stderr handle: the harness hides `eprintln!` of passing tests).
pub fn skip(test: &str, why: &str) {
    assert!(!required(), "{test} cannot run and DAEHWA_REQUIRE_ALL=1 makes that a failure: {why}");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("NOTICE: {test} SKIPPED: {why}\n").as_bytes());
}

/// Whether the CPU itself has the AVX-512 VNNI unit the packed and AVX-512 kernels use
/// (regardless of a `DAEHWA_KERNELS` cap).
pub fn cpu_has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// For a test of the AVX-512 VNNI paths that finds them unused: a note when the CPU lacks the
/// unit, a skip (so a failure under `DAEHWA_REQUIRE_ALL=1`) when the CPU has it but it is not
/// used (a `DAEHWA_KERNELS` cap, a detection bug).
pub fn avx512_unused(test: &str) {
    if cpu_has_avx512_vnni() {
        skip(test, "this CPU has AVX-512 VNNI but the kernels do not use it (is DAEHWA_KERNELS set?)");
    } else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("NOTICE: {test}: this CPU has no AVX-512 VNNI, nothing to test\n").as_bytes(),
        );
    }
}

/// Whether CPUID reports AMX-TILE and AMX-INT8 (leaf 7, EDX bits 24, 25), whatever the kernel
/// grants or `DAEHWA_KERNELS` says.
pub fn cpu_has_amx_int8() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 7 exists on the CPUs that run these tests (x86_64 with leaf 7).
        let r = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
        cpu_has_avx512_vnni() && r.edx & (1 << 24) != 0 && r.edx & (1 << 25) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
