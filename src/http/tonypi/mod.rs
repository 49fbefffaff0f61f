//! The routes of the TonyPi backend (AimanZX06/Monitoring_System_TonyPi) that fleetsink
//! answers in its place, with the same paths, parameters, defaults, status codes and
//! field names, so the TonyPi web UI can point at fleetsink. One file per TonyPi
//! router, named after it (`backend/routers/*.py`):
//!
//! | file | TonyPi router | routes |
//! |---|---|---|
//! | `alerts.rs` | `alerts.py` | `/api/v1/alerts*`: alerts, counts, acknowledge, resolve, thresholds |
//! | `robots_db.rs` | `robots_db.py` | `/api/v1/robots-db/*`: robots, job history, job totals, stats, logs |
//! | `robot_data.rs` | `robot_data.py` | `/api/v1/robot-data/*`: sensors, status, latest, servos, job summary, the command pass-through |
//! | `management.rs` | `management.py` | `/api/v1/management/*`: commands, emergency stop, resume, robot config, system status |
//! | `pi_perf.rs` | `pi_perf.py` | `/api/v1/pi/perf/{robot_id}`: a robot's `system_info` over time |
//! | `health.rs` | `health.py` | `/api/v1/health` |
//! | `logs.rs` | `logs.py` | `/api/v1/logs*`: list, create, categories, levels, stats, commands, errors, clear, export |
//! | `root.rs` | `main.py` | the `/` and `/api` banners |

pub mod alerts;
pub mod health;
pub mod logs;
pub mod management;
pub mod pi_perf;
pub mod robot_data;
pub mod robots_db;
pub mod root;
pub mod users;
