//! Integration tests: the real binary on real files, and the library's
//! public API against real repositories in temp directories.

mod util;

mod backup;
mod backup_live;
mod cli_habits;
mod cli_init;
mod cli_keys;
mod cli_locks;
mod concurrency;
mod contract;
mod corruption;
mod crash;
mod damage;
mod dashboard;
mod faults;
mod formats;
mod hostile;
mod import;
mod layers;
mod leak;
mod limits;
mod lock_scope;
mod manage;
mod paths;
mod remote;
mod replicate;
mod replicate_close;
mod replicate_remote;
mod restore;
mod s3_object_lock;
mod safety;
mod scrub;
mod service;
mod service_access;
mod service_alerts;
mod service_continuous;
mod service_jobs;
mod service_load;
mod sftp_append;
mod sftp_hosts;
mod shared_dirs;
mod sqldump;
mod times;
mod wal_untouched;
mod write_only;
