//! The kit's throwaway PKI (`purser_kit::pki`), and one for upstream servers whose files
//! live in a directory removed with it.

pub(crate) use purser_kit::pki::TestPki;

/// A [`TestPki`] for upstream servers, with the directory its files live in (removed when
/// this is dropped).
pub(crate) struct UpstreamPki {
    _dir: super::TempDir,
    pub pki: TestPki,
}

pub(crate) fn upstream_pki() -> UpstreamPki {
    let dir = super::TempDir::new("upstream-pki");
    let pki = TestPki::new(dir.path(), "upstream");
    UpstreamPki { _dir: dir, pki }
}
