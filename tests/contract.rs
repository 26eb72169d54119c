//! The backend contract: what every storage backend must do, written once
//! and run against each backend (ripgrep's `rgtest!` is the model). A new
//! backend is tested by adding one `backend_contract!` line.

use std::sync::Arc;

use litevault::backend::faulty::{Fault, FaultPlan, FaultyBackend};
use litevault::backend::local::LocalBackend;
use litevault::backend::memory::MemoryBackend;
use litevault::backend::Interrupted;
use litevault::{Backend, BackendErrorKind, Error, FileType};

/// A backend under test and whatever keeps it alive (`guard`).
pub struct Fixture {
    pub backend: Arc<dyn Backend>,
    pub guard: Option<tempfile::TempDir>,
}

pub fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
    Fixture {
        backend,
        guard: Some(dir),
    }
}

pub fn memory() -> Fixture {
    Fixture {
        backend: Arc::new(MemoryBackend::new()),
        guard: None,
    }
}

/// The fault wrapper with a fault that never fires: it must be invisible.
pub fn faulty_local() -> Fixture {
    let f = local();
    Fixture {
        backend: Arc::new(FaultyBackend::new(
            f.backend,
            FaultPlan {
                nth_write: u64::MAX,
                fault: Fault::FailBeforeWrite,
            },
        )),
        guard: f.guard,
    }
}

/// A backend for a fresh remote `location`, created as `init` would.
fn remote(location: &str) -> Fixture {
    Fixture {
        backend: litevault::Location::parse(location)
            .unwrap()
            .for_init(&litevault::BackendOptions::default())
            .unwrap(),
        guard: None,
    }
}

/// A fresh prefix of the test bucket on the shared single-node Garage.
pub fn s3() -> Fixture {
    remote(&crate::util::servers::s3_location("contract"))
}

/// A fresh directory on the shared sshd, over SFTP.
pub fn sftp() -> Fixture {
    remote(&crate::util::servers::sshd().location("contract"))
}

fn name(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn kind(e: &Error) -> Option<BackendErrorKind> {
    match e {
        Error::Backend(b) => Some(b.kind),
        _ => None,
    }
}

/// The contract, one test per clause, instantiated per backend.
macro_rules! backend_contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn created() -> Fixture {
                let f: Fixture = $make;
                f.backend.create().unwrap();
                f
            }

            #[test]
            fn a_new_repository_is_empty_and_cannot_be_created_twice() {
                let f = created();
                for ty in FileType::ALL {
                    assert!(f.backend.list(ty).unwrap().is_empty(), "{ty:?}");
                }
                f.backend.write(FileType::Config, "config", b"cfg").unwrap();
                assert!(matches!(
                    f.backend.create(),
                    Err(Error::AlreadyExists { .. })
                ));
            }

            #[test]
            fn write_read_list_remove() {
                let f = created();
                let b = &f.backend;
                b.write(FileType::Pack, &name('a'), b"pack bytes").unwrap();
                b.write(FileType::Index, &name('b'), b"idx").unwrap();
                b.write(FileType::Config, "config", b"the config").unwrap();
                assert_eq!(b.read(FileType::Pack, &name('a')).unwrap(), b"pack bytes");
                assert_eq!(b.read(FileType::Config, "config").unwrap(), b"the config");
                assert_eq!(
                    b.read_range(FileType::Pack, &name('a'), 5, 5).unwrap(),
                    b"bytes"
                );
                let e = b.read_range(FileType::Pack, &name('a'), 5, 6).unwrap_err();
                assert_eq!(kind(&e), Some(BackendErrorKind::OutOfRange), "{e}");
                assert!(e.to_string().contains("truncated"), "{e}");
                let listed = b.list(FileType::Pack).unwrap();
                assert_eq!(
                    listed
                        .iter()
                        .map(|f| (f.name.clone(), f.size))
                        .collect::<Vec<_>>(),
                    vec![(name('a'), 10)]
                );
                // Where the listing gives a time, it is the write's (the
                // storage's clock is the machine's here).
                if let Some(t) = listed[0].modified {
                    let off = std::time::SystemTime::now()
                        .duration_since(t)
                        .unwrap_or_else(|e| e.duration());
                    assert!(off < std::time::Duration::from_secs(300), "{off:?}");
                }
                assert_eq!(b.size(FileType::Index, &name('b')).unwrap(), 3);
                assert_eq!(b.list(FileType::Config).unwrap().len(), 1);
                b.remove(FileType::Pack, &name('a')).unwrap();
                b.remove(FileType::Pack, &name('a')).unwrap();
                assert!(b.list(FileType::Pack).unwrap().is_empty());
                assert_eq!(b.list(FileType::Index).unwrap().len(), 1, "types are apart");
            }

            #[test]
            fn listing_several_types_at_once_equals_listing_each() {
                let f = created();
                let b = &f.backend;
                b.write(FileType::Config, "config", b"c").unwrap();
                for (ty, c) in [
                    (FileType::Pack, '1'),
                    (FileType::Index, '2'),
                    (FileType::Key, '3'),
                    (FileType::Lock, '4'),
                    (FileType::Snapshot, '5'),
                    (FileType::Snapshot, '6'),
                ] {
                    b.write(ty, &name(c), &[c as u8; 7]).unwrap();
                }
                let types = [
                    FileType::Key,
                    FileType::Index,
                    FileType::Lock,
                    FileType::Snapshot,
                ];
                let many = b.list_many(&types).unwrap();
                for (ty, listed) in types.iter().zip(&many) {
                    assert_eq!(*listed, b.list(*ty).unwrap(), "{ty:?}");
                }
                assert_eq!(many[3].len(), 2);
                assert_eq!(many[0][0].size, 7);
            }

            #[test]
            fn range_reads_at_the_edges() {
                let f = created();
                let b = &f.backend;
                let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
                b.write(FileType::Pack, &name('c'), &data).unwrap();
                assert_eq!(
                    b.read_range(FileType::Pack, &name('c'), 0, 1).unwrap(),
                    &data[..1]
                );
                assert_eq!(
                    b.read_range(FileType::Pack, &name('c'), 99_990, 10)
                        .unwrap(),
                    &data[99_990..]
                );
                assert_eq!(
                    b.read_range(FileType::Pack, &name('c'), 12_345, 54_321)
                        .unwrap(),
                    &data[12_345..12_345 + 54_321]
                );
                assert!(b
                    .read_range(FileType::Pack, &name('c'), 100_000, 0)
                    .unwrap()
                    .is_empty());
                for (off, len) in [(99_999, 2), (100_001, 1), (u64::MAX - 1, 5)] {
                    let e = b
                        .read_range(FileType::Pack, &name('c'), off, len)
                        .unwrap_err();
                    assert_eq!(
                        kind(&e),
                        Some(BackendErrorKind::OutOfRange),
                        "{off}+{len}: {e}"
                    );
                }
            }

            #[test]
            fn missing_objects_are_not_found_and_name_the_object() {
                let f = created();
                let b = &f.backend;
                let n = name('d');
                for e in [
                    b.read(FileType::Snapshot, &n).unwrap_err(),
                    b.read_range(FileType::Pack, &n, 0, 1).unwrap_err(),
                    b.size(FileType::Index, &n).map(|_| ()).unwrap_err(),
                ] {
                    assert!(e.is_not_found(), "{e}");
                    assert!(e.to_string().contains(&n), "{e}");
                }
                b.remove(FileType::Lock, &n).unwrap();
            }

            #[test]
            fn a_rewrite_of_the_same_object_is_harmless() {
                let f = created();
                let b = &f.backend;
                b.write(FileType::Snapshot, &name('e'), b"same").unwrap();
                b.write(FileType::Snapshot, &name('e'), b"same").unwrap();
                assert_eq!(b.list(FileType::Snapshot).unwrap().len(), 1);
                assert_eq!(b.read(FileType::Snapshot, &name('e')).unwrap(), b"same");
            }

            #[test]
            fn names_that_are_not_object_names_are_refused() {
                let f = created();
                let b = &f.backend;
                for bad in ["../escape", "", "ABC", &"g".repeat(64), &"a".repeat(63)] {
                    let e = b.write(FileType::Index, bad, b"x").unwrap_err();
                    assert_eq!(kind(&e), Some(BackendErrorKind::Permanent), "{bad:?}: {e}");
                    assert!(b.read(FileType::Index, bad).is_err());
                }
                assert!(b.list(FileType::Index).unwrap().is_empty());
            }

            #[test]
            fn an_interrupted_write_is_never_listed_nor_read() {
                let f = created();
                let b = &f.backend;
                for how in [Interrupted::Partial, Interrupted::Unpublished] {
                    b.leave_interrupted_write(FileType::Pack, &name('f'), b"partial", how);
                    assert!(b.list(FileType::Pack).unwrap().is_empty(), "{how:?}");
                    assert!(b
                        .read(FileType::Pack, &name('f'))
                        .unwrap_err()
                        .is_not_found());
                }
                // The real write still succeeds afterwards.
                b.write(FileType::Pack, &name('f'), b"whole").unwrap();
                assert_eq!(b.read(FileType::Pack, &name('f')).unwrap(), b"whole");
            }

            #[test]
            fn concurrent_writers_each_store_their_objects_whole() {
                let f = created();
                let b = &f.backend;
                std::thread::scope(|s| {
                    for t in 0..8u8 {
                        s.spawn(move || {
                            for i in 0..16u8 {
                                let data = vec![t ^ i; 1000 + usize::from(i) * 97];
                                let n = format!("{t:02x}{i:02x}{}", "0".repeat(60));
                                b.write(FileType::Pack, &n, &data).unwrap();
                            }
                        });
                    }
                });
                let listed = b.list(FileType::Pack).unwrap();
                assert_eq!(listed.len(), 128);
                for f in listed {
                    let (t, i) = (
                        u8::from_str_radix(&f.name[..2], 16).unwrap(),
                        u8::from_str_radix(&f.name[2..4], 16).unwrap(),
                    );
                    assert_eq!(
                        b.read(FileType::Pack, &f.name).unwrap(),
                        vec![t ^ i; f.size as usize]
                    );
                    assert_eq!(f.size, 1000 + u64::from(i) * 97);
                }
            }

            #[test]
            fn large_objects_round_trip() {
                let f = created();
                let b = &f.backend;
                let data: Vec<u8> = (0..20u32 << 20)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                    .collect();
                b.write(FileType::Pack, &name('9'), &data).unwrap();
                assert_eq!(
                    b.size(FileType::Pack, &name('9')).unwrap(),
                    data.len() as u64
                );
                assert!(b.read(FileType::Pack, &name('9')).unwrap() == data);
                assert_eq!(
                    b.read_range(FileType::Pack, &name('9'), 17 << 20, 1 << 20)
                        .unwrap(),
                    &data[17 << 20..18 << 20]
                );
            }

            #[test]
            fn a_whole_repository_works_on_it() {
                let f = created_repository();
                let dir = tempfile::tempdir().unwrap();
                let db = dir.path().join("app.db");
                crate::util::workload::create(&db, 2, 3);
                let repo = litevault::Repository::open(f.backend.clone(), b"contract").unwrap();
                let s = litevault::backup(&repo, &litevault::BackupOptions::new(&db)).unwrap();
                let target = dir.path().join("restored.db");
                let repo = litevault::Repository::open(f.backend.clone(), b"contract").unwrap();
                litevault::restore(
                    &repo,
                    &s.snapshot.unwrap(),
                    &litevault::RestoreOptions::new(&target),
                )
                .unwrap();
                assert!(std::fs::read(&target).unwrap() == std::fs::read(&db).unwrap());
                let report = litevault::check(&repo, litevault::ReadData::All).unwrap();
                assert!(report.findings.is_empty(), "{:?}", report.findings);
            }

            fn created_repository() -> Fixture {
                let f: Fixture = $make;
                let opts = litevault::InitOptions {
                    kdf: litevault::KdfParams::TEST_ONLY_INSECURE,
                    ..litevault::InitOptions::default()
                };
                litevault::Repository::init(f.backend.clone(), b"contract", &opts).unwrap();
                f
            }
        }
    };
}

backend_contract!(local_backend, local());
backend_contract!(memory_backend, memory());
backend_contract!(faulty_wrapper_around_local, faulty_local());
backend_contract!(s3_backend, s3());
backend_contract!(sftp_backend, sftp());
