use fuser as _;
use scylla as _;
