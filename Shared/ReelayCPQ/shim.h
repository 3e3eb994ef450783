#ifndef REELAY_CPQ_SHIM_H
#define REELAY_CPQ_SHIM_H
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
/* Char-literal macros do not import into Swift. */
static inline int reelay_pg_diag_sqlstate(void) { return 'C'; }
static inline int reelay_pg_diag_message_primary(void) { return 'M'; }
static inline int reelay_pg_diag_message_detail(void) { return 'D'; }
static inline int reelay_pg_diag_constraint_name(void) { return 'n'; }
#endif
