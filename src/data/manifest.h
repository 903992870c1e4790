// A data directory's manifest.json (written by `meshlm prepare`), checked before training or
// evaluation reads a token: every shard it lists is there with its size and checksum, so a
// truncated, replaced or scrambled shard is an error naming it, not a silently different run.
#pragma once
#include <cstdint>
#include <string>

namespace meshlm {

struct DataIdentity {
  std::string dir;          // as given
  bool has_manifest = false;
  int64_t vocab_size = 0;   // the manifest's (0: unknown)
  // The same for the same data wherever it lives: SHA-256 of the manifest's shard list (names,
  // sizes, checksums). "" without a manifest (shards from elsewhere).
  std::string fingerprint;
};

// The manifest's vocab_size without verifying anything (0: no manifest or no vocab_size).
int64_t manifest_vocab_size(const std::string& dir);

// Verifies every shard the manifest lists (reads each once); no manifest is not an error.
DataIdentity verify_data_dir(const std::string& dir);

}  // namespace meshlm
