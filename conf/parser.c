/*
 * Lexer and parser of the conf language: text in, generic tree out
 * (struct conf_node). The parser knows one directive, 'include', which it
 * splices in place; everything else is the registry's business.
 */
#include "conf/conf-int.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_FILE_MAX ((size_t)16 << 20)  /* one file */
#define CONF_TOTAL_MAX ((size_t)64 << 20) /* all files of one conf */
#define CONF_WORD_MAX ((size_t)1 << 20)   /* one word after ${ENV} substitution */
#define CONF_DEPTH_MAX 32                 /* nested { } blocks */
#define CONF_INCLUDE_MAX 16               /* nested includes */
#define CONF_ENV_NAME_MAX 128

struct conf_tree {
    struct conf_arena *arena;
    struct conf_node root;
};

enum tok_type { TOK_EOF, TOK_WORD, TOK_SEMI, TOK_LBRACE, TOK_RBRACE };

struct token {
    enum tok_type type;
    struct conf_pos pos;
    bool quoted;
};

struct lexer {
    const char *p;
    size_t len, i;
    uint32_t line, col;
    const char *file; /* in the tree arena */
};

struct parser {
    struct conf_tree *t;
    char *buf; /* text of the current word (heap, grows to CONF_WORD_MAX) */
    size_t blen, bcap;
    size_t total; /* bytes read from all files */
    bool no_include;
    int include_depth;
};

struct nodevec {
    struct conf_node *v;
    size_t n, cap;
};

struct argvec {
    struct conf_arg *v;
    size_t n, cap;
};

static int parse_body(struct parser *P, struct lexer *lx, struct nodevec *out, int depth,
                      const struct conf_node *open, struct conf_err *err);

/* ---- lexer ------------------------------------------------------------------------------ */

static void
lex_pos(const struct lexer *lx, struct conf_pos *pos)
{
    pos->file = lx->file;
    pos->line = lx->line;
    pos->col = lx->col;
}

static void
lex_advance(struct lexer *lx)
{
    if (lx->p[lx->i] == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->i++;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
is_ctl(char c)
{
    unsigned char u = (unsigned char)c;
    return (u < 0x20 && !is_space(c)) || u == 0x7f;
}

static int
bad_ctl(const struct lexer *lx, struct conf_err *err)
{
    struct conf_pos pos;

    lex_pos(lx, &pos);
    return conf_errf(err, &pos, "unexpected control character 0x%02x",
                     (unsigned)(unsigned char)lx->p[lx->i]);
}

static int
buf_put(struct parser *P, const struct lexer *lx, const struct conf_pos *start, const char *s,
        size_t n, struct conf_err *err)
{
    if (n > CONF_WORD_MAX || P->blen > CONF_WORD_MAX - n)
        return conf_errf(err, start, "word is longer than %zu bytes", CONF_WORD_MAX);
    if (P->blen + n + 1 > P->bcap) {
        size_t cap = P->bcap ? P->bcap : 256;
        char *nb;
        while (cap < P->blen + n + 1)
            cap *= 2;
        nb = realloc(P->buf, cap);
        if (nb == NULL)
            return conf_errf(err, start, "out of memory");
        P->buf = nb;
        P->bcap = cap;
    }
    memcpy(P->buf + P->blen, s, n);
    P->blen += n;
    P->buf[P->blen] = '\0';
    (void)lx;
    return 0;
}

static bool
is_env_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* At "${": substitutes the variable into the word. */
static int
lex_env(struct parser *P, struct lexer *lx, const struct conf_pos *start, struct conf_err *err)
{
    struct conf_pos pos;
    char name[CONF_ENV_NAME_MAX + 1];
    const char *val;
    size_t j = lx->i + 2, n;

    lex_pos(lx, &pos);
    while (j < lx->len && is_env_char(lx->p[j]))
        j++;
    n = j - (lx->i + 2);
    if (j >= lx->len || lx->p[j] != '}')
        return conf_errf(err, &pos,
                         "expected '}' to close '${' (variable names are letters, digits and '_')");
    if (n == 0)
        return conf_errf(err, &pos, "empty variable name in '${}'");
    if (n > CONF_ENV_NAME_MAX)
        return conf_errf(err, &pos, "variable name is longer than %d characters",
                         CONF_ENV_NAME_MAX);
    memcpy(name, lx->p + lx->i + 2, n);
    name[n] = '\0';
    val = getenv(name);
    if (val == NULL)
        return conf_errf(err, &pos, "environment variable '%s' is not set", name);
    if (buf_put(P, lx, start, val, strlen(val), err) < 0)
        return -1;
    while (lx->i <= j)
        lex_advance(lx);
    return 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void
describe_char(char c, char *out, size_t len)
{
    unsigned char u = (unsigned char)c;

    if (u > 0x20 && u < 0x7f)
        snprintf(out, len, "'%c'", c);
    else
        snprintf(out, len, "byte 0x%02x", (unsigned)u);
}

static int
lex_quoted(struct parser *P, struct lexer *lx, struct token *tok, struct conf_err *err)
{
    char q = lx->p[lx->i];
    char what[16];

    lex_advance(lx);
    for (;;) {
        struct conf_pos here;
        char c, e, ch;
        int hi, lo;

        if (lx->i >= lx->len)
            return conf_errf(err, &tok->pos, "unterminated string (expected a closing %c)", q);
        c = lx->p[lx->i];
        if (c == q) {
            lex_advance(lx);
            break;
        }
        lex_pos(lx, &here);
        if (c == '\\') {
            if (lx->i + 1 >= lx->len)
                return conf_errf(err, &tok->pos, "unterminated string (expected a closing %c)", q);
            e = lx->p[lx->i + 1];
            if (q == '\'') {
                /* single quotes: only \' and \\ are escapes */
                if (e == '\'' || e == '\\') {
                    ch = e;
                    if (buf_put(P, lx, &tok->pos, &ch, 1, err) < 0)
                        return -1;
                    lex_advance(lx);
                    lex_advance(lx);
                    continue;
                }
                if (buf_put(P, lx, &tok->pos, "\\", 1, err) < 0)
                    return -1;
                lex_advance(lx);
                continue;
            }
            switch (e) {
            case '"':
            case '\'':
            case '\\':
            case '$': ch = e; break;
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'x':
                hi = lx->i + 2 < lx->len ? hexval(lx->p[lx->i + 2]) : -1;
                lo = lx->i + 3 < lx->len ? hexval(lx->p[lx->i + 3]) : -1;
                if (hi < 0 || lo < 0)
                    return conf_errf(err, &here, "bad escape '\\x' (expected two hex digits)");
                if (hi == 0 && lo == 0)
                    return conf_errf(err, &here, "'\\x00' is not allowed in a string");
                ch = (char)(hi * 16 + lo);
                if (buf_put(P, lx, &tok->pos, &ch, 1, err) < 0)
                    return -1;
                lex_advance(lx);
                lex_advance(lx);
                lex_advance(lx);
                lex_advance(lx);
                continue;
            default:
                /* unknown escape: kept as written, for regexes ("\.png$") */
                if (buf_put(P, lx, &tok->pos, "\\", 1, err) < 0)
                    return -1;
                lex_advance(lx);
                continue;
            }
            if (buf_put(P, lx, &tok->pos, &ch, 1, err) < 0)
                return -1;
            lex_advance(lx);
            lex_advance(lx);
            continue;
        }
        if (q == '"' && c == '$' && lx->i + 1 < lx->len && lx->p[lx->i + 1] == '{') {
            if (lex_env(P, lx, &tok->pos, err) < 0)
                return -1;
            continue;
        }
        if (is_ctl(c))
            return bad_ctl(lx, err);
        if (buf_put(P, lx, &tok->pos, &c, 1, err) < 0)
            return -1;
        lex_advance(lx);
    }
    if (lx->i < lx->len) {
        char c = lx->p[lx->i];
        if (!is_space(c) && c != ';' && c != '{' && c != '}' && c != '#') {
            struct conf_pos here;
            lex_pos(lx, &here);
            describe_char(c, what, sizeof(what));
            return conf_errf(err, &here,
                             "unexpected %s after a quoted string (expected a space, ';' or '{')",
                             what);
        }
    }
    tok->quoted = true;
    return 0;
}

static int
lex_bare(struct parser *P, struct lexer *lx, struct token *tok, struct conf_err *err)
{
    while (lx->i < lx->len) {
        char c = lx->p[lx->i];
        if (is_space(c) || c == ';' || c == '{' || c == '}')
            break;
        if (c == '"' || c == '\'') {
            struct conf_pos here;
            lex_pos(lx, &here);
            return conf_errf(err, &here, "unexpected quote inside a word (quote the whole word)");
        }
        if (is_ctl(c))
            return bad_ctl(lx, err);
        if (c == '$' && lx->i + 1 < lx->len && lx->p[lx->i + 1] == '{') {
            if (lex_env(P, lx, &tok->pos, err) < 0)
                return -1;
            continue;
        }
        if (buf_put(P, lx, &tok->pos, &c, 1, err) < 0)
            return -1;
        lex_advance(lx);
    }
    return 0;
}

/* Next token; a word's text is in P->buf (P->blen bytes). 0 or -1. */
static int
lex_next(struct parser *P, struct lexer *lx, struct token *tok, struct conf_err *err)
{
    char c;

    for (;;) {
        if (lx->i >= lx->len)
            break;
        c = lx->p[lx->i];
        if (is_space(c)) {
            lex_advance(lx);
        } else if (c == '#') {
            while (lx->i < lx->len && lx->p[lx->i] != '\n')
                lex_advance(lx);
        } else if (is_ctl(c)) {
            return bad_ctl(lx, err);
        } else {
            break;
        }
    }
    lex_pos(lx, &tok->pos);
    tok->quoted = false;
    P->blen = 0;
    if (lx->i >= lx->len) {
        tok->type = TOK_EOF;
        return 0;
    }
    c = lx->p[lx->i];
    switch (c) {
    case ';':
        tok->type = TOK_SEMI;
        lex_advance(lx);
        return 0;
    case '{':
        tok->type = TOK_LBRACE;
        lex_advance(lx);
        return 0;
    case '}':
        tok->type = TOK_RBRACE;
        lex_advance(lx);
        return 0;
    default: break;
    }
    tok->type = TOK_WORD;
    if (buf_put(P, lx, &tok->pos, "", 0, err) < 0)
        return -1;
    if (c == '"' || c == '\'')
        return lex_quoted(P, lx, tok, err);
    return lex_bare(P, lx, tok, err);
}

/* ---- files ------------------------------------------------------------------------------- */

enum read_fail { READ_OK, READ_ERRNO, READ_NOT_REGULAR, READ_TOO_BIG };

static enum read_fail
read_file(const char *path, char **out, size_t *outlen, int *eno)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0, cap;
    enum read_fail rc = READ_ERRNO;
    int fd;

    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *eno = errno;
        return READ_ERRNO;
    }
    if (fstat(fd, &st) < 0) {
        *eno = errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = READ_NOT_REGULAR;
        goto out;
    }
    if ((uint64_t)st.st_size > CONF_FILE_MAX) {
        rc = READ_TOO_BIG;
        goto out;
    }
    cap = (size_t)st.st_size + 1;
    data = malloc(cap);
    if (data == NULL) {
        *eno = ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (len == cap) {
            char *nd;
            if (cap > CONF_FILE_MAX) {
                rc = READ_TOO_BIG;
                goto out;
            }
            nd = realloc(data, cap * 2);
            if (nd == NULL) {
                *eno = ENOMEM;
                goto out;
            }
            data = nd;
            cap *= 2;
        }
        r = read(fd, data + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *eno = errno;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > CONF_FILE_MAX) {
        rc = READ_TOO_BIG;
        goto out;
    }
    *out = data;
    *outlen = len;
    data = NULL;
    rc = READ_OK;
out:
    free(data);
    close(fd);
    return rc;
}

static int
parse_text(struct parser *P, const char *file, const char *text, size_t len, struct nodevec *out,
           int depth, struct conf_err *err)
{
    struct lexer lx = {.p = text, .len = len, .line = 1, .col = 1};
    struct conf_pos pos = {.file = file, .line = 1, .col = 1};

    if (P->total > CONF_TOTAL_MAX - len)
        return conf_errf(err, &pos, "conf is larger than %zu MiB in total (with includes)",
                         CONF_TOTAL_MAX >> 20);
    P->total += len;
    lx.file = conf_arena_strndup(P->t->arena, file, strlen(file));
    if (lx.file == NULL)
        return conf_errf(err, &pos, "out of memory");
    return parse_body(P, &lx, out, depth, NULL, err);
}

/* Reads and parses one file into 'out'. 'from' is the include directive, or
 * NULL for the top file (messages then start with the file name alone). */
static int
parse_file(struct parser *P, const char *path, struct nodevec *out, int depth,
           const struct conf_pos *from, struct conf_err *err)
{
    char ebuf[128];
    char *text = NULL;
    size_t len = 0;
    int eno = 0, rc;

    switch (read_file(path, &text, &len, &eno)) {
    case READ_OK: break;
    case READ_ERRNO:
        if (from != NULL)
            return conf_errf(err, from, "cannot open included file '%s': %s", path,
                             conf_strerror(eno, ebuf, sizeof(ebuf)));
        return conf_errf(err, NULL, "%s: cannot open: %s", path,
                         conf_strerror(eno, ebuf, sizeof(ebuf)));
    case READ_NOT_REGULAR:
        if (from != NULL)
            return conf_errf(err, from, "included file '%s' is not a regular file", path);
        return conf_errf(err, NULL, "%s: not a regular file", path);
    case READ_TOO_BIG:
        if (from != NULL)
            return conf_errf(err, from, "included file '%s' is larger than %zu MiB", path,
                             CONF_FILE_MAX >> 20);
        return conf_errf(err, NULL, "%s: file is larger than %zu MiB", path, CONF_FILE_MAX >> 20);
    }
    rc = parse_text(P, path, text, len, out, depth, err);
    free(text);
    return rc;
}

static bool
has_glob_meta(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* 'include PATTERN;' at n: splices the files' directives into out. */
static int
do_include(struct parser *P, const struct lexer *lx, const struct conf_node *n, struct nodevec *out,
           int depth, struct conf_err *err)
{
    const char *slash, *pat;
    char *path = NULL;
    glob_t g;
    size_t dirlen, k;
    int rc = -1, grc;

    if (n->nargs != 1 || n->args[0].len == 0)
        return conf_errf(err, &n->pos, "'include' expects a file name or glob pattern");
    if (P->no_include)
        return conf_errf(err, &n->pos, "'include' is not allowed in a conf without a file name");
    pat = n->args[0].s;
    slash = strrchr(lx->file, '/');
    dirlen = (pat[0] != '/' && slash != NULL) ? (size_t)(slash - lx->file) + 1 : 0;
    path = malloc(dirlen + n->args[0].len + 1);
    if (path == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    memcpy(path, lx->file, dirlen);
    memcpy(path + dirlen, pat, n->args[0].len + 1);
    if (P->include_depth >= CONF_INCLUDE_MAX) {
        conf_errf(err, &n->pos,
                  "includes nested more than %d deep at '%s' (is there an include cycle?)",
                  CONF_INCLUDE_MAX, path);
        goto out;
    }
    P->include_depth++;
    if (!has_glob_meta(path)) {
        rc = parse_file(P, path, out, depth, &n->pos, err);
        P->include_depth--;
        goto out;
    }
    grc = glob(path, 0, NULL, &g);
    if (grc == GLOB_NOMATCH) {
        rc = 0; /* a glob matching nothing is fine: an empty sites/ folder */
    } else if (grc != 0) {
        conf_errf(err, &n->pos, "cannot expand include pattern '%s'", path);
    } else {
        rc = 0;
        for (k = 0; k < g.gl_pathc && rc == 0; k++)
            rc = parse_file(P, g.gl_pathv[k], out, depth, &n->pos, err);
    }
    if (grc != GLOB_NOMATCH)
        globfree(&g);
    P->include_depth--;
out:
    free(path);
    return rc;
}

/* ---- parser ------------------------------------------------------------------------------ */

static int
nodevec_push(struct nodevec *v, const struct conf_node *n)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        struct conf_node *nv = realloc(v->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *n;
    return 0;
}

static int
argvec_push(struct argvec *v, const struct conf_arg *a)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        struct conf_arg *nv = realloc(v->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *a;
    return 0;
}

/* Moves a heap vector's items into the arena. */
static void *
to_arena(struct conf_arena *a, const void *items, size_t n, size_t size)
{
    void *p;

    if (n == 0)
        return NULL;
    p = conf_arena_alloc(a, n * size);
    if (p != NULL)
        memcpy(p, items, n * size);
    return p;
}

/* One directive, its name already read (tok). Appends it (or, for include,
 * the included directives) to out. */
static int
parse_directive(struct parser *P, struct lexer *lx, const struct token *name_tok,
                struct nodevec *out, int depth, struct conf_err *err)
{
    struct conf_arena *A = P->t->arena;
    struct conf_node n = {.pos = name_tok->pos};
    struct argvec args = {0};
    struct nodevec kids = {0};
    struct token tok;
    bool is_include;
    int rc = -1;

    n.name = conf_arena_strndup(A, P->buf, P->blen);
    if (n.name == NULL) {
        conf_errf(err, &n.pos, "out of memory");
        goto out;
    }
    is_include = !name_tok->quoted && strcmp(n.name, "include") == 0;
    for (;;) {
        struct conf_arg a;
        if (lex_next(P, lx, &tok, err) < 0)
            goto out;
        if (tok.type == TOK_SEMI)
            break;
        if (tok.type == TOK_LBRACE) {
            n.block = true;
            break;
        }
        if (tok.type == TOK_EOF) {
            conf_errf(err, &tok.pos, "unexpected end of file (expected ';' or '{' after '%s')",
                      n.name);
            goto out;
        }
        if (tok.type == TOK_RBRACE) {
            conf_errf(err, &tok.pos, "expected ';' or '{' after '%s'", n.name);
            goto out;
        }
        a.s = conf_arena_strndup(A, P->buf, P->blen);
        a.len = P->blen;
        a.quoted = tok.quoted;
        a.pos = tok.pos;
        if (a.s == NULL || argvec_push(&args, &a) < 0) {
            conf_errf(err, &tok.pos, "out of memory");
            goto out;
        }
    }
    n.nargs = args.n;
    n.args = to_arena(A, args.v, args.n, sizeof(*args.v));
    if (args.n != 0 && n.args == NULL) {
        conf_errf(err, &n.pos, "out of memory");
        goto out;
    }
    if (is_include) {
        if (n.block) {
            conf_errf(err, &n.pos, "'include' does not take a { } block");
            goto out;
        }
        rc = do_include(P, lx, &n, out, depth, err);
        goto out;
    }
    if (n.block) {
        if (depth >= CONF_DEPTH_MAX) {
            conf_errf(err, &tok.pos, "blocks nested more than %d deep", CONF_DEPTH_MAX);
            goto out;
        }
        if (parse_body(P, lx, &kids, depth + 1, &n, err) < 0)
            goto out;
        n.nchildren = kids.n;
        n.children = to_arena(A, kids.v, kids.n, sizeof(*kids.v));
        if (kids.n != 0 && n.children == NULL) {
            conf_errf(err, &n.pos, "out of memory");
            goto out;
        }
    }
    if (nodevec_push(out, &n) < 0) {
        conf_errf(err, &n.pos, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(args.v);
    free(kids.v);
    return rc;
}

static int
parse_body(struct parser *P, struct lexer *lx, struct nodevec *out, int depth,
           const struct conf_node *open, struct conf_err *err)
{
    struct token tok;

    for (;;) {
        if (lex_next(P, lx, &tok, err) < 0)
            return -1;
        switch (tok.type) {
        case TOK_EOF:
            if (open != NULL)
                return conf_errf(err, &tok.pos,
                                 "unexpected end of file (expected '}' to close '%s' from line "
                                 "%u)",
                                 open->name, (unsigned)open->pos.line);
            return 0;
        case TOK_RBRACE:
            if (open != NULL)
                return 0;
            return conf_errf(err, &tok.pos, "unexpected '}' (no block is open)");
        case TOK_SEMI:
            return conf_errf(err, &tok.pos, "unexpected ';' (expected a directive name)");
        case TOK_LBRACE:
            return conf_errf(err, &tok.pos, "unexpected '{' (expected a directive name)");
        case TOK_WORD:
            if (parse_directive(P, lx, &tok, out, depth, err) < 0)
                return -1;
            break;
        }
    }
}

/* ---- public --------------------------------------------------------------------------------- */

static struct conf_tree *
tree_new(void)
{
    struct conf_arena *a = conf_arena_new();
    struct conf_tree *t;

    if (a == NULL)
        return NULL;
    t = conf_arena_alloc(a, sizeof(*t));
    if (t == NULL) {
        conf_arena_free(a);
        return NULL;
    }
    t->arena = a;
    t->root.name = "";
    return t;
}

static struct conf_tree *
tree_finish(struct parser *P, struct nodevec *top, int rc)
{
    struct conf_tree *t = P->t;

    if (rc == 0) {
        t->root.nchildren = top->n;
        t->root.children = to_arena(t->arena, top->v, top->n, sizeof(*top->v));
        if (top->n != 0 && t->root.children == NULL)
            rc = -1;
    }
    free(top->v);
    free(P->buf);
    if (rc < 0) {
        conf_tree_free(t);
        return NULL;
    }
    t->root.block = true;
    return t;
}

struct conf_tree *
conf_tree_parse_file(const char *path, struct conf_err *err)
{
    struct parser P = {0};
    struct nodevec top = {0};
    int rc;

    P.t = tree_new();
    if (P.t == NULL) {
        conf_errf(err, NULL, "%s: out of memory", path);
        return NULL;
    }
    P.t->root.pos.file = conf_arena_strndup(P.t->arena, path, strlen(path));
    rc = parse_file(&P, path, &top, 0, NULL, err);
    return tree_finish(&P, &top, rc);
}

struct conf_tree *
conf_tree_parse_string(const char *name, const char *text, size_t len, struct conf_err *err)
{
    struct parser P = {0};
    struct nodevec top = {0};
    const char *file = name != NULL ? name : "<string>";
    int rc;

    P.t = tree_new();
    if (P.t == NULL) {
        conf_errf(err, NULL, "%s: out of memory", file);
        return NULL;
    }
    P.no_include = name == NULL;
    P.t->root.pos.file = conf_arena_strndup(P.t->arena, file, strlen(file));
    if (len > CONF_FILE_MAX) {
        conf_errf(err, NULL, "%s: file is larger than %zu MiB", file, CONF_FILE_MAX >> 20);
        rc = -1;
    } else {
        rc = parse_text(&P, file, text, len, &top, 0, err);
    }
    return tree_finish(&P, &top, rc);
}

const struct conf_node *
conf_tree_root(const struct conf_tree *t)
{
    return &t->root;
}

void
conf_tree_free(struct conf_tree *t)
{
    if (t != NULL)
        conf_arena_free(t->arena);
}
