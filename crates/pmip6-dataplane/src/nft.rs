//! In-process nftables through libnftables (Debian `libnftables1`), loaded at run time.
//!
//! This module owns the only `unsafe` code of the crate: `dlopen("libnftables.so.1")`, the
//! `dlsym` of the seven (eight) entry points, and the calls into them. Everything above it
//! ([`crate::steering`]) speaks nftables' command language through [`Nft::run`]: one buffer is
//! one nftables transaction, applied atomically by the kernel or not at all. No `nft` process is
//! ever started (DESIGN.md, "Choices already made": a move costs ~0.07 ms in-process against
//! ~20 ms for a process).
//!
//! Thread rules:
//! - A context talks to the network namespace of the thread that called [`Nft::new`]: its
//!   netlink socket is opened there and keeps that namespace for its lifetime.
//! - [`Nft`] is `Send` (it may move to another thread) but not `Sync`: [`Nft::run`] takes
//!   `&mut self`, so one thread at a time uses a context.
//! - libnftables keeps process-wide state of its own, so every call into the library, from any
//!   context, is serialised by one process-wide lock here. Contexts in several threads (one per
//!   namespace, as the tests do) are therefore safe; they do not run in parallel.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::fmt;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The shared object the wrapper loads (Debian package `libnftables1`).
pub const LIBRARY: &str = "libnftables.so.1";

/// `NFT_CTX_DEFAULT` of `<nftables/libnftables.h>`.
const NFT_CTX_DEFAULT: c_uint = 0;
/// `NFT_CTX_OUTPUT_JSON` of `<nftables/libnftables.h>` (`1 << 4`).
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

/// Why nftables could not be used or a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftError {
    /// The library could not be loaded or lacks an entry point.
    Library(String),
    /// `nft_ctx_new` returned nothing.
    Context,
    /// The command buffer contains a NUL octet.
    Nul,
    /// libnftables refused the transaction; nothing of it was applied. The text is the
    /// library's own error output.
    Command(String),
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Library(e) => write!(f, "cannot use {LIBRARY} (Debian package libnftables1): {e}"),
            Self::Context => f.write_str("nft_ctx_new failed"),
            Self::Nul => f.write_str("nftables command contains a NUL octet"),
            Self::Command(e) => write!(f, "nftables refused the transaction: {}", e.trim_end()),
        }
    }
}

impl std::error::Error for NftError {}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);

/// The entry points, resolved once per process. The library is never unloaded.
struct Library {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    run_cmd_from_buffer: RunCmd,
    buffer_output: CtxBuffer,
    get_output_buffer: CtxGetBuffer,
    buffer_error: CtxBuffer,
    get_error_buffer: CtxGetBuffer,
    output_set_flags: SetFlags,
}

static LIBRARY_HANDLE: OnceLock<Result<Library, String>> = OnceLock::new();
/// Serialises every call into libnftables (see the module's thread rules).
static CALLS: Mutex<()> = Mutex::new(());

fn calls() -> MutexGuard<'static, ()> {
    // A panic while holding the lock leaves no state of ours behind: take it anyway.
    CALLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn dl_error() -> String {
    // SAFETY: dlerror has no preconditions; it returns NULL or a NUL-terminated string valid
    // until the next dl* call on this thread, which we copy at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown dlopen error".to_owned();
    }
    // SAFETY: non-null, NUL-terminated (above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

fn load() -> Result<Library, String> {
    let name = CString::new(LIBRARY).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid NUL-terminated string; RTLD_NOW resolves everything at once.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(dl_error());
    }
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: `handle` is a live handle from dlopen (never closed), `c` NUL-terminated.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() { Err(format!("{name}: {}", dl_error())) } else { Ok(p) }
    };
    // SAFETY (each transmute below): the symbol has exactly this C signature in
    // <nftables/libnftables.h> (libnftables 1.0): `struct nft_ctx *nft_ctx_new(uint32_t flags)`,
    // `void nft_ctx_free(struct nft_ctx *)`, `int nft_run_cmd_from_buffer(struct nft_ctx *,
    // const char *)`, `int nft_ctx_buffer_output(struct nft_ctx *)`, `const char
    // *nft_ctx_get_output_buffer(struct nft_ctx *)`, the same two for the error stream, and
    // `void nft_ctx_output_set_flags(struct nft_ctx *, unsigned int)`; a data pointer from dlsym
    // and a function pointer have the same size on Linux.
    unsafe {
        Ok(Library {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol("nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol("nft_ctx_free")?),
            run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(symbol("nft_run_cmd_from_buffer")?),
            buffer_output: std::mem::transmute::<*mut c_void, CtxBuffer>(symbol("nft_ctx_buffer_output")?),
            get_output_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(symbol("nft_ctx_get_output_buffer")?),
            buffer_error: std::mem::transmute::<*mut c_void, CtxBuffer>(symbol("nft_ctx_buffer_error")?),
            get_error_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(symbol("nft_ctx_get_error_buffer")?),
            output_set_flags: std::mem::transmute::<*mut c_void, SetFlags>(symbol("nft_ctx_output_set_flags")?),
        })
    }
}

fn library() -> Result<&'static Library, NftError> {
    LIBRARY_HANDLE.get_or_init(load).as_ref().map_err(|e| NftError::Library(e.clone()))
}

/// One libnftables context (see the module's thread rules).
pub struct Nft {
    lib: &'static Library,
    ctx: *mut c_void,
    json: bool,
}

// SAFETY: a libnftables context has no thread affinity (it is a heap object with a netlink
// socket); `Nft` gives out no reference to it and every use goes through `&mut self` under the
// process-wide lock, so moving it to another thread is sound. It is not `Sync`.
unsafe impl Send for Nft {}

impl fmt::Debug for Nft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nft").field("json", &self.json).finish_non_exhaustive()
    }
}

impl Nft {
    /// Loads libnftables (once per process) and opens a context in the calling thread's network
    /// namespace, with its output and error streams buffered.
    pub fn new() -> Result<Self, NftError> {
        let lib = library()?;
        let guard = calls();
        // SAFETY: the entry point is resolved with its C signature; flags 0 is NFT_CTX_DEFAULT.
        let ctx = unsafe { (lib.ctx_new)(NFT_CTX_DEFAULT) };
        if ctx.is_null() {
            return Err(NftError::Context);
        }
        // SAFETY: `ctx` is a live context from nft_ctx_new, owned by us.
        let (out, err) = unsafe { ((lib.buffer_output)(ctx), (lib.buffer_error)(ctx)) };
        // Released before `nft` can drop: Drop takes the lock again.
        drop(guard);
        let nft = Self { lib, ctx, json: false };
        if out != 0 || err != 0 {
            return Err(NftError::Library("cannot buffer output".to_owned()));
        }
        Ok(nft)
    }

    /// Whether [`Nft::run`] output (of `list` commands) is JSON (`NFT_CTX_OUTPUT_JSON`) rather
    /// than nftables' text. Input is accepted in either language regardless.
    pub fn set_json_output(&mut self, json: bool) {
        let _guard = calls();
        // SAFETY: `self.ctx` is live (freed only in Drop); the flags are libnftables' own.
        unsafe { (self.lib.output_set_flags)(self.ctx, if json { NFT_CTX_OUTPUT_JSON } else { 0 }) };
        self.json = json;
    }

    /// Runs `commands` (nftables' command language, one or many lines) as one transaction: all
    /// of it is applied or none. Returns what the commands printed (for `list`).
    pub fn run(&mut self, commands: &str) -> Result<String, NftError> {
        let buffer = CString::new(commands).map_err(|_| NftError::Nul)?;
        let _guard = calls();
        // SAFETY: `self.ctx` is live; `buffer` is NUL-terminated and outlives the call.
        let rc = unsafe { (self.lib.run_cmd_from_buffer)(self.ctx, buffer.as_ptr()) };
        let output = self.take(self.lib.get_output_buffer);
        let error = self.take(self.lib.get_error_buffer);
        if rc != 0 {
            return Err(NftError::Command(if error.is_empty() { format!("error {rc}") } else { error }));
        }
        Ok(output)
    }

    /// Copies and resets one of the context's buffered streams.
    fn take(&self, get: CtxGetBuffer) -> String {
        // SAFETY: `self.ctx` is live and buffering (set in `new`); the returned string is
        // NUL-terminated and valid until the next call on this context, and we copy it at once.
        let p = unsafe { get(self.ctx) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: non-null and NUL-terminated (above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        let _guard = calls();
        // SAFETY: `self.ctx` came from nft_ctx_new and is freed exactly once, here.
        unsafe { (self.lib.ctx_free)(self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_library_in_errors() {
        let e = NftError::Library("not found".to_owned());
        assert!(e.to_string().contains(LIBRARY));
    }

    #[test]
    fn refuses_nul() {
        // Loading needs the library, which the build machine has; without it, the error names it.
        match Nft::new() {
            Ok(mut nft) => assert_eq!(nft.run("list\0tables"), Err(NftError::Nul)),
            Err(e) => assert!(e.to_string().contains(LIBRARY)),
        }
    }
}
