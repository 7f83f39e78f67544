/* placeholder */
typedef int dsm__placeholder_diff;
