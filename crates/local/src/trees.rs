//! Whole directory trees: copied (a preview's build cache starts as a copy of its project's) and handed to a user
//! (a builder's cache and checkouts, or back to the daemon's user when the builder is released).

use std::path::Path;

/// Copies `from` into `to` (which must not exist yet): files, directories with their modes, and symbolic links
/// as links. `skip` names entries of the top directory left out.
pub(crate) fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(), String> {
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    copy_dir(from, &partial, skip).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            partial.display()
        )
    })?;
    std::fs::rename(&partial, to)
        .map_err(|e| format!("cannot move {} into place: {e}", to.display()))
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&source, &target, &[])?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            copy_file(&source, &target)?;
        }
    }
    Ok(())
}

/// Copies one file, refusing to follow a link that replaced it since it was listed.
fn copy_file(source: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut from = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(source)?;
    let mode = from.metadata()?.permissions();
    let mut to = std::fs::File::create(target)?;
    std::io::copy(&mut from, &mut to)?;
    to.set_permissions(mode)
}

/// Makes `uid:gid` the owner of `path` and of everything below it (links themselves, never what they point to);
/// nothing to do when the top already belongs to them.
pub(crate) fn hand_over(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.uid() == uid && meta.gid() == gid => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    preview_isolation::hand_tree_to(path, uid, gid)
        .map_err(|e| format!("cannot hand {} to uid {uid}: {e}", path.display()))
}

/// A directory owned by `owner` (when given) with `mode`, made with its parents if missing.
pub(crate) fn own_dir(path: &Path, owner: Option<u32>, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))
            .map_err(|e| format!("cannot hand {} to uid {uid}: {e}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_modes_and_links_and_leave_out_what_is_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = preview_testing::TempDir::new("copy-tree");
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("cargo/debug")).expect("dirs");
        std::fs::write(from.join("cargo/debug/app"), "binary").expect("file");
        std::fs::set_permissions(
            from.join("cargo/debug/app"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("mode");
        std::os::unix::fs::symlink("debug/app", from.join("cargo/latest")).expect("link");
        std::fs::write(from.join(".skipped"), "").expect("skipped");
        let to = dir.path().join("to");
        copy_tree(&from, &to, &[".skipped"]).expect("copied");
        assert_eq!(
            std::fs::read_to_string(to.join("cargo/latest")).expect("through the link"),
            "binary"
        );
        assert_eq!(
            std::fs::read_link(to.join("cargo/latest")).expect("still a link"),
            Path::new("debug/app")
        );
        let mode = std::fs::metadata(to.join("cargo/debug/app"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!to.join(".skipped").exists());
        assert!(copy_tree(&from, &to, &[]).is_err(), "the target exists");
    }
}
