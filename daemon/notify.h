/*
 * notify: tells the service manager what the broker is doing (systemd's
 * sd_notify protocol: READY, RELOADING, STOPPING, STATUS, WATCHDOG).
 * Without NOTIFY_SOCKET, or built without libsystemd, every call does
 * nothing.
 */
#ifndef SCHAKEL_NOTIFY_H
#define SCHAKEL_NOTIFY_H

#include <stdint.h>

/* Reads the watchdog interval from the environment; call once. */
void notify_init(void);

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *status);

/* Sends WATCHDOG=1 when half the watchdog interval has passed since the
 * last one; call from the event loop on every turn. */
void notify_watchdog(uint64_t now_ms);

#endif
