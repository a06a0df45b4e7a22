//! Object storage for finished images: a local folder by default, an
//! S3-compatible bucket (R2, S3, MinIO) for several instances.

use std::sync::Arc;

use object_store::ObjectStore;
use std::str::FromStr;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;

use super::config::StorageConfig;

/// Opens the configured store; a bad setting stops start-up.
pub fn open(config: &StorageConfig) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match config {
        StorageConfig::Local(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("DARKROOM_STORAGE: cannot create {}: {e}", dir.display()))?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| anyhow::anyhow!("DARKROOM_STORAGE: {}: {e}", dir.display()))?;
            Ok(Arc::new(store))
        }
        StorageConfig::S3 { bucket, aws } => {
            let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
            for (name, value) in aws {
                let key = AmazonS3ConfigKey::from_str(name)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", name.to_ascii_uppercase()))?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(|e| anyhow::anyhow!("DARKROOM_STORAGE: s3://{bucket}: {e}"))?;
            Ok(Arc::new(store))
        }
    }
}
