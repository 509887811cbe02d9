//! Giving memory back to the system once a list is indexed.
//!
//! A (re)list holds every trimmed object of a kind at once until its indexes are built
//! (see [`super::watch::drive`]); at 30,000 pods that is tens of MiB freed at once. The
//! allocator keeps freed pages for reuse, so without a collection the process stays near
//! the list's peak RSS.

/// Returns the allocator's free pages to the system. Relists are rare (start, and a watch
/// that lost its place), so the walk over the heaps costs nothing that matters.
pub fn release_freed() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it takes no pointer.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
