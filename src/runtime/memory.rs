//! Giving memory back to the system once a list is indexed.
//!
//! A (re)list holds every trimmed object of a kind at once until its indexes are built
//! (see [`super::watch::drive`]); at 30,000 pods that is tens of MiB freed at once. glibc
//! keeps freed pages in its heaps, so without a trim the process stays at the list's peak
//! RSS for good.

/// Returns the allocator's free pages to the system. Relists are rare (start, and a watch
/// that lost its place), so the walk over the heaps costs nothing that matters.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}
