# R references for hccrad's statistics (tests/test_r_references.py). Run from this folder:
#   Rscript make_references.R
# Made with Debian's R 4.2 and r-cran-survival 3.5, -maxstat 0.7, -glmnet 4.1, -hmisc 4.8, -prodlim, -rms.
# Data: R survival's `veteran` (Kalbfleisch & Prentice 1980) and `colon` (Moertel et al. 1990; the death
# records, etype 2), written to CSV here with the scores derived below so that Python reads exactly R's inputs.
suppressPackageStartupMessages({
  library(survival); library(maxstat); library(glmnet); library(Hmisc); library(prodlim); library(jsonlite)
})
options(digits = 17)
out <- list(versions = list(R = R.version.string, survival = as.character(packageVersion("survival")),
                            maxstat = as.character(packageVersion("maxstat")),
                            glmnet = as.character(packageVersion("glmnet")),
                            Hmisc = as.character(packageVersion("Hmisc")),
                            prodlim = as.character(packageVersion("prodlim"))))

# ---- data: veteran (days, with ties) and colon (death, times in days and in whole months) ----
vet <- veteran
vet$score <- predict(coxph(Surv(time, status) ~ karno + age + celltype + prior, data = vet), type = "lp")
vet$score2 <- predict(coxph(Surv(time, status) ~ karno, data = vet), type = "lp")
vet <- vet[, c("time", "status", "karno", "age", "score", "score2")]
write.csv(vet, "veteran.csv", row.names = FALSE)

col <- colon[colon$etype == 2, ]
col <- col[complete.cases(col[, c("age", "nodes", "obstruct", "perfor", "adhere", "differ", "extent", "surg",
                                   "node4", "sex")]), ]
col$months <- ceiling(col$time / 30.4375)
col$rx_lev <- as.integer(col$rx == "Lev"); col$rx_lev5fu <- as.integer(col$rx == "Lev+5FU")
col <- col[, c("time", "months", "status", "age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ",
               "extent", "surg", "node4", "rx_lev", "rx_lev5fu")]
col$score <- predict(coxph(Surv(months, status) ~ age + nodes + obstruct + differ + extent + surg + node4 +
                             rx_lev + rx_lev5fu, data = col), type = "lp")
write.csv(col, "colon.csv", row.names = FALSE)

# ---- maxstat.test: standardized log-rank statistic, cut-off and pLausen92 ----
maxstat_case <- function(data, time, score) {
  f <- as.formula(paste0("Surv(", time, ", status) ~ ", score))
  m <- maxstat.test(f, data = data, smethod = "LogRank", pmethod = "Lau92", minprop = 0.1, maxprop = 0.9)
  list(cutoff = unname(m$estimate), statistic = unname(m$statistic), p = m$p.value, n_cuts = length(m$cuts))
}
out$maxstat <- list(
  veteran_score = c(list(data = "veteran", time = "time", score = "score"), maxstat_case(vet, "time", "score")),
  veteran_karno = c(list(data = "veteran", time = "time", score = "karno"), maxstat_case(vet, "time", "karno")),
  colon_nodes = c(list(data = "colon", time = "months", score = "nodes"), maxstat_case(col, "months", "nodes")),
  colon_score = c(list(data = "colon", time = "months", score = "score"), maxstat_case(col, "months", "score")))

# ---- cv.glmnet: grouped Cox deviance with tied times, fixed folds and lambda path ----
xcols <- c("age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ", "extent", "surg", "node4", "rx_lev",
           "rx_lev5fu")
x <- scale(as.matrix(col[, xcols])) * sqrt(nrow(col) / (nrow(col) - 1))  # population SD, as hccrad
foldid <- rep(1:5, length.out = nrow(col))
lambda <- exp(seq(log(0.08), log(0.004), length.out = 20))
cvfit <- cv.glmnet(x, Surv(col$months, col$status), family = "cox", foldid = foldid, lambda = lambda,
                   standardize = FALSE, thresh = 1e-14, maxit = 1e6, grouped = TRUE)
out$cv_glmnet <- list(data = "colon", time = "months", columns = xcols, foldid = foldid, lambda = cvfit$lambda,
                      cvm = cvfit$cvm, cvsd = cvfit$cvsd, lambda_min = cvfit$lambda.min,
                      lambda_1se = cvfit$lambda.1se)

# ---- smooth calibration (McLernon 2023): Cox on an RCS of cloglog(risk), Breslow and Efron baselines ----
calibration_case <- function(data, time, horizon, score) {
  fit <- coxph(as.formula(paste0("Surv(", time, ", status) ~ ", score)), data = data, x = TRUE)
  risk <- 1 - c(summary(survfit(fit, newdata = data, se.fit = FALSE), times = horizon)$surv)
  tt <- data[[time]]
  d <- data.frame(time = pmin(tt, horizon), status = ifelse(tt <= horizon, data$status, 0),
                  cll = log(-log(1 - risk)))
  basis <- rcspline.eval(d$cll, nk = 3, inclx = TRUE)
  d$b1 <- basis[, 1]; d$b2 <- basis[, 2]
  cal <- coxph(Surv(time, status) ~ b1 + b2, data = d, ties = "efron")
  res <- list(risk = risk, knots = attr(basis, "knots"))
  for (ctype in 1:2) {
    obs <- 1 - c(summary(survfit(cal, newdata = d, ctype = ctype, se.fit = FALSE), times = horizon)$surv)
    err <- abs(risk - obs)
    res[[paste0("ctype", ctype)]] <- list(observed = obs, ici = mean(err), e50 = median(err),
                                          e90 = unname(quantile(err, 0.9)))
  }
  res
}
out$calibration <- list(
  veteran_100 = c(list(data = "veteran", time = "time", horizon = 100), calibration_case(vet, "time", 100, "score")),
  colon_24 = c(list(data = "colon", time = "months", horizon = 24), calibration_case(col, "months", 24, "score")))

# ---- Kaplan-Meier median (survfit's plateau rule) and the reverse-KM median follow-up ----
plateau <- data.frame(time = c(1, 2, 3, 4, 5, 6, 7, 8), status = c(1, 1, 1, 1, 0, 1, 0, 0))
never <- data.frame(time = c(2, 4, 6, 8, 10), status = c(1, 0, 0, 1, 0))
end_plateau <- data.frame(time = c(1, 2, 3, 4), status = c(1, 1, 0, 0))
km_median <- function(time, status) unname(summary(survfit(Surv(time, status) ~ 1))$table["median"])
out$km_median <- list(
  plateau = list(time = plateau$time, status = plateau$status, median = km_median(plateau$time, plateau$status)),
  never = list(time = never$time, status = never$status, median = km_median(never$time, never$status)),
  end_plateau = list(time = end_plateau$time, status = end_plateau$status,
                     median = km_median(end_plateau$time, end_plateau$status)),
  veteran = list(data = "veteran", time = "time", median = km_median(vet$time, vet$status),
                 follow_up = km_median(vet$time, 1 - vet$status)),
  colon = list(data = "colon", time = "months", median = km_median(col$months, col$status),
               follow_up = km_median(col$months, 1 - col$status)))

# ---- Uno's C (survival::concordance, timewt = "n/G2", truncated at tau) ----
uno <- function(data, time, score, tau) {
  cc <- concordance(as.formula(paste0("Surv(", time, ", status) ~ ", score)), data = data, timewt = "n/G2",
                    ymax = tau, reverse = TRUE)
  list(data = deparse(substitute(data)), time = time, score = score, tau = tau, c = unname(cc$concordance))
}
out$uno_c <- list(veteran = uno(vet, "time", "score", 365), colon = uno(col, "months", "score", 60))

# ---- censoring-aware NRI (Pencina 2011, survival form) and IDI (IPCW), by their published formulas ----
km_risk <- function(time, status, t) {
  if (length(time) == 0) return(0)
  s <- summary(survfit(Surv(time, status) ~ 1), times = t, extend = TRUE)$surv
  1 - s
}
nri_idi <- function(time, status, old, new, t) {
  up <- new > old; down <- new < old
  pe <- km_risk(time, status, t)
  eu <- km_risk(time[up], status[up], t); ed <- km_risk(time[down], status[down], t)
  pu <- mean(up); pd <- mean(down)
  nri_e <- (eu * pu - ed * pd) / pe
  nri_n <- ((1 - ed) * pd - (1 - eu) * pu) / (1 - pe)
  # censoring survival G by prodlim's reverse Kaplan-Meier (events leave the censoring risk set first)
  g <- prodlim(Hist(time, status) ~ 1, reverse = TRUE)
  case <- time <= t & status == 1; control <- time > t
  at <- time[case] - 1e-9 * max(time)  # G(T-); predict.prodlim answers for sorted times
  g_case <- numeric(length(at)); g_case[order(at)] <- predict(g, times = sort(at), type = "surv")
  change <- new - old
  idi <- sum(change[case] / g_case) / sum(1 / g_case) - mean(change[control])
  list(nri = nri_e + nri_n, nri_events = nri_e, nri_non_events = nri_n, idi = idi)
}
vfit_old <- coxph(Surv(time, status) ~ karno, data = vet)
vfit_new <- coxph(Surv(time, status) ~ karno + age + celltype + prior, data = veteran)
risk_at <- function(fit, data, t) 1 - c(summary(survfit(fit, newdata = data, se.fit = FALSE), times = t)$surv)
vet$risk_old <- risk_at(vfit_old, veteran, 90); vet$risk_new <- risk_at(vfit_new, veteran, 90)
write.csv(vet, "veteran.csv", row.names = FALSE)
out$nri_idi <- c(list(data = "veteran", time = "time", horizon = 90),
                 nri_idi(vet$time, vet$status, vet$risk_old, vet$risk_new, 90))

# ---- decision curve: net benefit of "treat if risk >= p_t" at horizon t (Vickers 2008, survival form) ----
net_benefit <- function(time, status, risk, t, thresholds) {
  sapply(thresholds, function(p) {
    pos <- risk >= p
    if (!any(pos)) return(0)
    r <- km_risk(time[pos], status[pos], t)
    mean(pos) * r - mean(pos) * (1 - r) * p / (1 - p)
  })
}
thresholds <- seq(0.05, 0.95, by = 0.05)
out$net_benefit <- list(data = "veteran", time = "time", horizon = 90, thresholds = thresholds,
                        model = net_benefit(vet$time, vet$status, vet$risk_new, 90, thresholds),
                        all = net_benefit(vet$time, vet$status, rep(1, nrow(vet)), 90, thresholds))
write_json(out, "r_references.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
