//! Which operating-system user the server runs as, and handing it the directories it needs.

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// The unprivileged account the server runs as when this process is root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Who runs `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    /// Not root: the server runs as whoever we are.
    CurrentUser,
    /// Root: PostgreSQL refuses that, so switch to this user.
    Server(ServerUser),
}

impl RunAs {
    /// `postgres` (the Debian package creates it), else `nobody`, when we are root.
    pub(crate) fn detect() -> Result<Self, HarnessError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(RunAs::CurrentUser);
        }
        let passwd =
            fs::read_to_string("/etc/passwd").map_err(HarnessError::io("read /etc/passwd"))?;
        ["postgres", "nobody"]
            .into_iter()
            .find_map(|name| lookup(&passwd, name))
            .map(RunAs::Server)
            .ok_or(HarnessError::NoServerUser)
    }

    pub(crate) fn server_user(&self) -> Option<&ServerUser> {
        match self {
            RunAs::CurrentUser => None,
            RunAs::Server(user) => Some(user),
        }
    }

    /// A command that runs as the server's user (std drops root's supplementary groups too).
    pub(crate) fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new(program.as_ref());
        if let RunAs::Server(user) = self {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// Create `dir` (and missing parents, mode 0755) and make it private to the server's user.
    pub(crate) fn private_dir(&self, dir: &Path) -> Result<(), HarnessError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(HarnessError::io(format!("create {}", dir.display())))?;
        fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(HarnessError::io(format!("chmod 0700 {}", dir.display())))?;
        self.hand_over(dir)
    }

    /// Give an existing file or directory to the server's user.
    pub(crate) fn hand_over(&self, path: &Path) -> Result<(), HarnessError> {
        match self {
            RunAs::CurrentUser => Ok(()),
            RunAs::Server(user) => chown(path, Some(user.uid), Some(user.gid)).map_err(
                HarnessError::io(format!("chown {} to {}", path.display(), user.name)),
            ),
        }
    }

    /// Every existing ancestor of `path` must be enterable by the server's user, or the server
    /// fails later with a much less helpful message.
    pub(crate) fn check_traversable(&self, path: &Path) -> Result<(), HarnessError> {
        let RunAs::Server(user) = self else {
            return Ok(());
        };
        let path: PathBuf = std::path::absolute(path)
            .map_err(HarnessError::io(format!("resolve {}", path.display())))?;
        for dir in path.ancestors() {
            let Ok(meta) = fs::metadata(dir) else {
                continue;
            };
            let mode = meta.mode() & 0o777;
            let execute_bit = if meta.uid() == user.uid {
                0o100
            } else if meta.gid() == user.gid {
                0o010
            } else {
                0o001
            };
            if mode & execute_bit == 0 {
                return Err(HarnessError::NotTraversable {
                    dir: dir.to_path_buf(),
                    user: user.name.clone(),
                    mode,
                });
            }
        }
        Ok(())
    }
}

fn lookup(passwd: &str, name: &str) -> Option<ServerUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(ServerUser {
            name: name.to_owned(),
            uid,
            gid,
        })
    })
}
