//! Images: turns an image reference into a root filesystem on this host
//! (DESIGN §6). `dir:` references are used in place.

use std::path::PathBuf;

use atelet_api::ImageRef;

/// Errors of the image layer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not name something usable on this host.
    #[error("image {reference}: {message}")]
    Invalid {
        /// As given.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The reference's scheme is not implemented by this daemon.
    #[error("image {0}: this image format is not supported yet (use dir:<rootfs>)")]
    Unsupported(String),
}

/// Defaults an image provides for what a container spec leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Entrypoint + Cmd.
    pub command: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// WorkingDir.
    pub working_dir: Option<String>,
    /// User, resolved to a uid.
    pub uid: Option<u32>,
    /// User's group, resolved to a gid.
    pub gid: Option<u32>,
}

/// A reference resolved to something runsc can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The root filesystem directory.
    pub rootfs: PathBuf,
    /// Defaults from the image.
    pub config: ImageConfig,
}

/// Resolves image references.
#[derive(Debug, Clone, Default)]
pub struct ImageStore {}

impl ImageStore {
    /// A store; `dir:` needs no state.
    pub fn new() -> ImageStore {
        ImageStore {}
    }

    /// Resolves `reference` to a root filesystem, checking that it exists.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let parsed = ImageRef::parse(reference).map_err(|message| ImageError::Invalid {
            reference: reference.to_string(),
            message,
        })?;
        match parsed {
            ImageRef::Dir { path } => {
                let rootfs = PathBuf::from(&path);
                match std::fs::metadata(&rootfs) {
                    Ok(m) if m.is_dir() => Ok(ResolvedImage {
                        rootfs,
                        config: ImageConfig::default(),
                    }),
                    Ok(_) => Err(ImageError::Invalid {
                        reference: reference.to_string(),
                        message: format!("{path} is not a directory"),
                    }),
                    Err(e) => Err(ImageError::Invalid {
                        reference: reference.to_string(),
                        message: format!("{path}: {e}"),
                    }),
                }
            }
            ImageRef::OciLayout { .. } | ImageRef::OciArchive { .. } => {
                Err(ImageError::Unsupported(reference.to_string()))
            }
        }
    }
}
