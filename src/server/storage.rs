//! Object storage for finished images: a local folder by default, an
//! S3-compatible bucket (R2, S3, MinIO) for several instances.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
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
        StorageConfig::S3 { bucket } => {
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| anyhow::anyhow!("DARKROOM_STORAGE: s3://{bucket}: {e}"))?;
            Ok(Arc::new(store))
        }
    }
}
